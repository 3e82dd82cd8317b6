#include "testing/unit_bindings.h"

#include "autograd/backward_pass.h"
#include "autograd/context.h"
#include "autograd/context_container.h"
#include "autograd/messages.h"
#include "autograd/recv_rpc_backward.h"
#include "autograd/send_rpc_backward.h"
#include "common/errors.h"

#include <torch/csrc/autograd/functions/utils.h>
#include <torch/csrc/autograd/python_variable.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/csrc/jit/python/pybind_utils.h>

#include <deque>
#include <mutex>

namespace distgrad::testing {

namespace py = pybind11;
using namespace distgrad::autograd;

namespace {

// Stands in for the agent of a BackwardPass: keeps the messages it sends
// (each with the future the pass waits on, which the test answers) and the
// work it offloads (which the test runs when it chooses). Everything runs on
// the test's thread.
struct FakePeers {
  struct Sent {
    int peer;
    PropagateGradients message;
    FuturePtr answer;
  };

  std::mutex mu;  // guards what follows
  std::vector<Sent> sent;
  std::deque<std::function<void()>> offloaded;
  bool fail_sends = false;
};

// One worker's share of a pass, made as DistEngine makes it (through
// Context::passFor) but with FakePeers for the agent. The pass holds the
// peers weakly (the futures it waits on hold the pass, through their
// callbacks), and this holds the context only as the pass does (weakly), so
// a test can release it in the middle of a pass.
class TestPass {
 public:
  TestPass(const std::shared_ptr<Context>& context, int64_t pass_id, bool retain_graph, int rank,
           std::string worker, std::vector<at::Tensor> roots)
      : peers_(std::make_shared<FakePeers>()), roots_(std::move(roots)) {
    for (const auto& root : roots_) {
      root_edges_.push_back(torch::autograd::impl::gradient_edge(root));
    }
    std::weak_ptr<FakePeers> weak = peers_;
    auto send = [weak](int peer, PropagateGradients message) -> FuturePtr {
      auto peers = weak.lock();
      if (!peers) {
        throw DistError("the test's fake peers are gone");
      }
      std::lock_guard<std::mutex> lock(peers->mu);
      if (peers->fail_sends) {
        throw DistNetworkError("fake send to peer " + std::to_string(peer) + " failed");
      }
      auto answer = c10::make_intrusive<c10::ivalue::Future>(c10::AnyType::get());
      peers->sent.push_back({peer, std::move(message), answer});
      return answer;
    };
    auto offload = [weak](std::function<void()> work) {
      if (auto peers = weak.lock()) {
        std::lock_guard<std::mutex> lock(peers->mu);
        peers->offloaded.push_back(std::move(work));
      }
    };
    pass_ = context->passFor(pass_id, [&](const ContextGraph& graph) {
      return std::make_shared<BackwardPass>(pass_id, retain_graph, context, rank, worker, send,
                                            offload, root_edges_, graph);
    });
  }

  std::shared_ptr<BackwardPass> pass() const { return pass_; }
  std::shared_ptr<FakePeers> peers() const { return peers_; }
  const std::vector<at::Tensor>& roots() const { return roots_; }
  const torch::autograd::edge_list& rootEdges() const { return root_edges_; }

  // Runs offloaded work (including what it offloads in turn) until none is
  // left; returns how many pieces ran.
  int runOffloaded() {
    int ran = 0;
    while (true) {
      std::function<void()> work;
      {
        std::lock_guard<std::mutex> lock(peers_->mu);
        if (peers_->offloaded.empty()) {
          return ran;
        }
        work = std::move(peers_->offloaded.front());
        peers_->offloaded.pop_front();
      }
      work();
      ++ran;
    }
  }

  FuturePtr answerFuture(size_t index) {
    std::lock_guard<std::mutex> lock(peers_->mu);
    if (index >= peers_->sent.size()) {
      throw std::out_of_range("no message " + std::to_string(index));
    }
    return peers_->sent[index].answer;
  }

 private:
  std::shared_ptr<FakePeers> peers_;
  std::vector<at::Tensor> roots_;
  torch::autograd::edge_list root_edges_;
  std::shared_ptr<BackwardPass> pass_;
};

// A task's future, as the test sees it: never waited on (every fake peer
// answers synchronously), only inspected.
struct TaskFuture {
  FuturePtr future;

  bool done() const { return future->completed(); }
  // The reports the task completed with; raises its error if it failed.
  std::vector<int64_t> result() const {
    if (!future->completed()) {
      throw std::logic_error("the task has not completed");
    }
    if (future->hasError()) {
      std::rethrow_exception(future->exception_ptr());
    }
    return PassAnswer::fromIValue(future->value()).reports.vec();
  }
  // The messages for the task's requester that its answer carries, as
  // (kind, message id, grads).
  std::vector<std::tuple<int64_t, int64_t, std::vector<at::Tensor>>> carried() const {
    result();
    std::vector<std::tuple<int64_t, int64_t, std::vector<at::Tensor>>> carried;
    for (const auto& message : PassAnswer::fromIValue(future->value()).carried) {
      carried.emplace_back(static_cast<int64_t>(message.kind), message.message_id, message.grads);
    }
    return carried;
  }
};

// The IValue a Python value of a gradient message's arguments stands for
// (bool, int, float, tensor, tuple, list), so that tests can build malformed
// ones.
c10::IValue toIValue(const py::handle& value) {
  if (py::isinstance<py::bool_>(value)) {
    return value.cast<bool>();
  }
  if (py::isinstance<py::int_>(value)) {
    return value.cast<int64_t>();
  }
  if (py::isinstance<py::float_>(value)) {
    return value.cast<double>();
  }
  if (THPVariable_Check(value.ptr())) {
    return value.cast<at::Tensor>();
  }
  if (py::isinstance<py::tuple>(value)) {
    std::vector<c10::IValue> elements;
    for (const auto& element : value) {
      elements.push_back(toIValue(element));
    }
    return c10::ivalue::Tuple::create(std::move(elements));
  }
  if (py::isinstance<py::list>(value)) {
    c10::impl::GenericList list(c10::AnyType::get());
    for (const auto& element : value) {
      list.push_back(toIValue(element));
    }
    return list;
  }
  throw std::invalid_argument("cannot stand for an argument of a gradient message");
}

py::tuple reportTuple(const PassReport& report) {
  py::list undecided;
  for (const auto& u : report.undecided) {
    undecided.append(py::make_tuple(u.peer, u.message_id));
  }
  return py::make_tuple(report.worker, report.stamp, undecided);
}

py::dict sentDict(const FakePeers::Sent& sent) {
  py::dict d;
  d["peer"] = sent.peer;
  d["kind"] = static_cast<int64_t>(sent.message.kind);
  d["context_id"] = sent.message.context_id;
  d["pass_id"] = sent.message.pass_id;
  d["message_id"] = sent.message.message_id;
  d["retain_graph"] = sent.message.retain_graph;
  d["grads"] = sent.message.grads;
  d["answered"] = sent.answer->completed();
  return d;
}

}  // namespace

void initAutogradBindings(py::module& m) {
  py::class_<ContextContainer>(m, "ContextContainer")
      .def(py::init<>())
      .def("set_rank", &ContextContainer::setRank)
      .def("create", [](ContextContainer& c) { return c.create()->id(); })
      .def("retrieve", [](const ContextContainer& c, int64_t id) { return c.retrieve(id)->id(); })
      .def("retrieve_or_create",
           [](ContextContainer& c, int64_t id) { return c.retrieveOrCreate(id)->id(); })
      .def("release", [](ContextContainer& c, int64_t id) { return c.release(id) != nullptr; })
      .def("clear", &ContextContainer::clear)
      .def("size", &ContextContainer::size)
      .def("new_id", &ContextContainer::newId)
      .def("created_by", &ContextContainer::createdBy);

  py::class_<Context, std::shared_ptr<Context>>(m, "Context")
      .def(py::init<int64_t>(), py::arg("id"))
      .def_property_readonly("id", &Context::id)
      // As the caller of an RPC records it (rpc_recording.cpp): a send
      // node over the sent tensors that require grad.
      .def(
          "record_send",
          [](Context& context, const std::vector<at::Tensor>& sent, int peer, int64_t message_id) {
            context.addSendNode(c10::make_intrusive<SendRpcBackward>(sent, peer, message_id));
          },
          py::arg("tensors"), py::arg("peer"), py::arg("message_id"))
      // As the receiver records it: a RecvRpcBackward becomes the grad_fn of
      // the received tensors (which the test then uses in its graph).
      .def(
          "record_recv",
          [](Context& context, const std::vector<at::Tensor>& received, int peer,
             int64_t message_id) {
            auto node = c10::make_intrusive<RecvRpcBackward>(context.id(), peer, message_id);
            context.addRecvNode(node);
            for (const auto& t : received) {
              torch::autograd::set_history(t, node);
            }
          },
          py::arg("tensors"), py::arg("peer"), py::arg("message_id"))
      .def("has_send_node",
           [](const Context& context, int64_t message_id) {
             return context.sendNode(message_id) != nullptr;
           })
      .def("gradients", [](const Context& context) {
        std::vector<std::pair<at::Tensor, at::Tensor>> grads;
        for (const auto& entry : context.gradients()) {
          grads.emplace_back(entry.key(), entry.value());
        }
        return grads;
      });

  py::class_<TaskFuture>(m, "TaskFuture")
      .def("done", &TaskFuture::done)
      .def("result", &TaskFuture::result)
      .def("carried", &TaskFuture::carried);

  py::class_<TestPass>(m, "BackwardPass")
      .def(py::init<std::shared_ptr<Context>, int64_t, bool, int, std::string,
                    std::vector<at::Tensor>>(),
           py::arg("context"), py::arg("pass_id"), py::arg("retain_graph") = false,
           py::arg("rank") = 0, py::arg("worker") = "worker0",
           py::arg("roots") = std::vector<at::Tensor>())
      .def_property_readonly("id", [](const TestPass& p) { return p.pass()->id(); })
      .def("running", [](const TestPass& p) { return p.pass()->running(); })
      .def("run_from_roots",
           [](TestPass& p) {
             return TaskFuture{p.pass()->runFromRoots(p.roots(), p.rootEdges())};
           })
      .def(
          "run_from_send_node",
          [](TestPass& p, int64_t message_id, bool absent, std::vector<at::Tensor> grads, int src) {
            return TaskFuture{
                p.pass()->runFromSendNode(src, message_id, absent, std::move(grads))};
          },
          py::arg("message_id"), py::arg("absent") = false,
          py::arg("grads") = std::vector<at::Tensor>(), py::arg("src") = -1)
      .def("run_join", [](TestPass& p) { return TaskFuture{p.pass()->runJoin()}; })
      .def("report", [](TestPass& p) { return reportTuple(p.pass()->report()); })
      .def("pending_offloads",
           [](TestPass& p) {
             std::lock_guard<std::mutex> lock(p.peers()->mu);
             return p.peers()->offloaded.size();
           })
      .def("run_offloaded", &TestPass::runOffloaded)
      .def("set_fail_sends",
           [](TestPass& p, bool fail) {
             std::lock_guard<std::mutex> lock(p.peers()->mu);
             p.peers()->fail_sends = fail;
           })
      .def("sent",
           [](TestPass& p) {
             std::lock_guard<std::mutex> lock(p.peers()->mu);
             py::list sent;
             for (const auto& s : p.peers()->sent) {
               sent.append(sentDict(s));
             }
             return sent;
           })
      // The peer's answer to message index: its task completed with these
      // encoded reports, carrying messages for this worker given as (kind,
      // message id, grads) of this pass (of pass carried_pass_id if given).
      .def(
          "answer",
          [](TestPass& p, size_t index, std::vector<int64_t> reports,
             const std::vector<std::tuple<int64_t, int64_t, std::vector<at::Tensor>>>& carried,
             std::optional<int64_t> carried_pass_id) {
            PassAnswer answer;
            answer.reports = c10::List<int64_t>(std::move(reports));
            for (const auto& [kind, message_id, grads] : carried) {
              PropagateGradients message;
              message.kind = static_cast<PropagateGradients::Kind>(kind);
              message.context_id = p.pass()->contextId();
              message.pass_id = carried_pass_id.value_or(p.pass()->id());
              message.message_id = message_id;
              message.grads = grads;
              answer.carried.push_back(std::move(message));
            }
            p.answerFuture(index)->markCompleted(answer.toIValue());
          },
          py::arg("index"), py::arg("reports") = std::vector<int64_t>(),
          py::arg("carried") =
              std::vector<std::tuple<int64_t, int64_t, std::vector<at::Tensor>>>(),
          py::arg("carried_pass_id") = std::nullopt)
      // The peer's task failed: an error as the rpc layer carries it back.
      .def(
          "answer_error",
          [](TestPass& p, size_t index, std::string type_name, std::string message,
             std::string worker) {
            p.answerFuture(index)->setError(std::make_exception_ptr(
                RemoteError(std::move(type_name), std::move(message), std::move(worker))));
          },
          py::arg("index"), py::arg("type_name"), py::arg("message"), py::arg("worker"))
      .def_static("num_running", &BackwardPass::numRunning);

  m.attr("GRADIENTS") = static_cast<int64_t>(PropagateGradients::kGradients);
  m.attr("ABSENT") = static_cast<int64_t>(PropagateGradients::kAbsent);
  m.attr("JOIN") = static_cast<int64_t>(PropagateGradients::kJoin);

  // reports: a list of (worker, stamp, [(peer, message id), ...]).
  m.def("encode_reports", [](const std::vector<std::tuple<int64_t, int64_t,
                                                         std::vector<std::pair<int64_t, int64_t>>>>&
                                 reports) {
    c10::List<int64_t> encoded;
    for (const auto& [worker, stamp, undecided] : reports) {
      PassReport report;
      report.worker = worker;
      report.stamp = stamp;
      for (const auto& [peer, message_id] : undecided) {
        report.undecided.push_back({peer, message_id});
      }
      report.appendTo(encoded);
    }
    return encoded.vec();
  });
  m.def("parse_reports", [](std::vector<int64_t> encoded) {
    py::list reports;
    for (const auto& report : PassReport::parse(c10::List<int64_t>(std::move(encoded)))) {
      reports.append(reportTuple(report));
    }
    return reports;
  });

  // The arguments of a gradient message, decoded; returns its fields as a tuple.
  m.def("propagate_gradients_from_args", [](const py::list& args) {
    std::vector<c10::IValue> values;
    for (const auto& arg : args) {
      values.push_back(toIValue(arg));
    }
    PropagateGradients decoded = PropagateGradients::fromArgs(values);
    return py::make_tuple(static_cast<int64_t>(decoded.kind), decoded.context_id, decoded.pass_id,
                          decoded.message_id, decoded.retain_graph, decoded.timeout_seconds,
                          decoded.grads);
  });
  m.def("propagate_gradients_to_args",
        [](int64_t kind, int64_t context_id, int64_t pass_id, int64_t message_id,
           bool retain_graph, double timeout_seconds, std::vector<at::Tensor> grads) {
          PropagateGradients message;
          message.kind = static_cast<PropagateGradients::Kind>(kind);
          message.context_id = context_id;
          message.pass_id = pass_id;
          message.message_id = message_id;
          message.retain_graph = retain_graph;
          message.timeout_seconds = timeout_seconds;
          message.grads = std::move(grads);
          py::list args;
          for (const auto& value : message.toArgs()) {
            args.append(torch::jit::toPyObject(value));
          }
          return args;
        });
}

}  // namespace distgrad::testing
