#include "autograd/dist_autograd.h"
#include "common/errors.h"
#include "optim/native_step.h"
#include "python/bindings.h"
#include "python/call_arguments.h"
#include "python/call_invoke.h"
#include "python/gil.h"
#include "python/interrupt.h"
#include "python/python_values.h"
#include "python/script_functions.h"
#include "rpc/agent.h"

#include <pybind11/functional.h>
#include <torch/csrc/jit/python/pybind_utils.h>
#include <torch/csrc/jit/runtime/operator.h>

namespace distgrad::python {

namespace py = pybind11;
using rpc::Agent;
using rpc::CallKind;
using rpc::Request;

namespace {

int rankOf(const py::object& to) {
  auto agent = Agent::current();
  if (py::isinstance<py::str>(to)) {
    return agent->worker(to.cast<std::string>()).rank;
  }
  if (py::isinstance<py::int_>(to)) {
    return agent->worker(to.cast<int>()).rank;
  }
  TORCH_CHECK_TYPE(false, "a destination is a worker name, a rank or a WorkerInfo, got ",
                   std::string(py::str(to.get_type())));
}

}  // namespace

void initRpcBindings(py::module& m) {
  m.def(
      "_agent_init",
      [](const std::string& name, int rank, int world_size,
         std::function<py::bytes(py::bytes)> mac, std::function<bool(py::bytes, py::bytes)> verify,
         int num_worker_threads, double timeout, const std::string& host,
         uint64_t max_message_bytes, uint64_t shared_memory_bytes, double handshake_timeout,
         double frame_timeout) {
        rpc::AgentOptions options;
        options.name = name;
        options.rank = rank;
        options.world_size = world_size;
        // The job key stays in Python, with its vetted HMAC (distgrad._job_key).
        options.auth.mac = [mac](const std::string& message) {
          RuntimeGil gil;
          return std::string(mac(py::bytes(message)));
        };
        options.auth.verify = [verify](const std::string& message, const std::string& tag) {
          RuntimeGil gil;
          return verify(py::bytes(message), py::bytes(tag));
        };
        options.num_worker_threads = num_worker_threads;
        options.default_timeout_seconds = timeout;
        options.limits.max_data_bytes = max_message_bytes;
        options.limits.max_meta_bytes = std::min<uint64_t>(max_message_bytes, UINT32_MAX);
        options.shared_memory_bytes = shared_memory_bytes;
        options.handshake_timeout_seconds = handshake_timeout;
        options.frame_stall_timeout_seconds = frame_timeout;
        auto agent = std::make_shared<Agent>(options);
        autograd::install(*agent);
        optim::install(*agent);
        auto functions = std::make_shared<PythonScriptFunctions>();
        agent->setScriptFunctionResolver(
            [functions](const std::string& name) { return (*functions)(name); });
        rpc::setClassResolver(
            [functions](const c10::QualifiedName& name) { return functions->resolveClass(name); });
        agent->setPythonCallRunner(pythonCallRunner(agent));
        agent->setPythonValueCodec(pythonValueCodec());
        int port = agent->listen(host);
        Agent::install(agent);
        return port;
      },
      "Creates and installs this process's RPC agent; returns its listening port.");
  m.def(
      "_agent_start",
      [](std::vector<std::string> names, std::vector<std::string> addresses) {
        Agent::current()->start(std::move(names), std::move(addresses));
      });
  m.def(
      "_agent_wait_idle",
      [](double timeout) {
        auto agent = Agent::current();
        return waitInterruptibly([&agent](double seconds) { return agent->waitUntilIdle(seconds); },
                                 timeout);
      },
      py::call_guard<py::gil_scoped_release>());
  m.def(
      "_agent_shutdown",
      [] {
        if (auto agent = Agent::currentOrNull()) {
          agent->shutdown();
          Agent::uninstall();
          autograd::uninstall();
        }
      },
      py::call_guard<py::gil_scoped_release>());
  m.def("_agent_is_running", [] { return Agent::currentOrNull() != nullptr; });
  m.def("_agent_default_timeout", [] { return Agent::current()->defaultTimeout(); });
  m.def("_agent_set_default_timeout",
        [](double seconds) { Agent::current()->setDefaultTimeout(seconds); });
  m.def("_agent_debug_info", [] {
    auto agent = Agent::current();
    std::map<std::string, int64_t> info{
        {"num_pending_calls", static_cast<int64_t>(agent->numPendingCalls())},
        {"num_active_requests", static_cast<int64_t>(agent->numActiveRequests())},
        {"shared_memory_bytes_in_use", static_cast<int64_t>(agent->sharedMemoryInUse())},
        {"num_results_sent_in_place", static_cast<int64_t>(agent->sharedMemoryLends())}};
    for (const auto& [name, count] : agent->rrefs().debugInfo()) {
      info.emplace(name, count);
    }
    for (const auto& [name, count] : optim::debugInfo()) {
      info.emplace(name, count);
    }
    return info;
  });
  m.def("_agent_lost_peers", [] { return Agent::current()->lostPeers(); });
  m.def("_agent_probe", [](int rank) { Agent::current()->probe(rank); },
        py::call_guard<py::gil_scoped_release>());
  m.def("_agent_serve_with_this_thread_state", [](bool on) {
    Agent::current()->setServingState(on ? std::make_shared<const at::ThreadLocalState>() : nullptr);
  });
  m.def("_rank_of", &rankOf);
  // The worker table lives in the agent only; Python asks it.
  m.def("_agent_worker", [](const py::object& to) {
    const auto& info = Agent::current()->worker(rankOf(to));
    return std::make_pair(info.name, info.rank);
  });
  m.def("_agent_self", [] {
    const auto& info = Agent::current()->self();
    return std::make_pair(info.name, info.rank);
  });
  m.def("_agent_workers", [] {
    std::vector<std::pair<std::string, int>> workers;
    for (const auto& info : Agent::current()->workers()) {
      workers.emplace_back(info.name, info.rank);
    }
    return workers;
  });

  // A call is built by one of the *_request functions, then sent by
  // _invoke (rpc_sync, rpc_async) or _remote.
  py::class_<Request>(m, "_Request");
  m.def("_builtin_request", [](const std::string& name, const py::args& args,
                               const py::kwargs& kwargs) {
    // Resolved here, like torch's own Python bindings resolve overloads,
    // so the callee runs the exact overload with a complete stack.
    const auto& ops = torch::jit::getAllOperatorsFor(c10::Symbol::fromQualString(name));
    TORCH_CHECK_VALUE(!ops.empty(), "unknown builtin operator '", name, "'");
    auto [op, stack] = torch::jit::getOpWithStack(ops, args, kwargs);
    const auto& op_name = op->schema().operator_name();
    Request request;
    request.kind = CallKind::kBuiltin;
    request.target = op_name.overload_name.empty() ? op_name.name
                                                   : op_name.name + "." + op_name.overload_name;
    request.args = std::move(stack);
    return request;
  });
  m.def("_script_request", [](const torch::jit::StrongFunctionPtr& fn, const py::args& args,
                              const py::kwargs& kwargs) {
    Request request;
    request.kind = CallKind::kScript;
    request.target = fn.function_->qualname().qualifiedName();
    request.args = stackForSchema(fn.function_->getSchema(), args, kwargs);
    return request;
  });
  m.def("_named_request", [](const std::string& name, const py::tuple& args) {
    std::vector<c10::IValue> values;
    for (const auto& a : args) {
      values.push_back(toUntypedIValue(a));
    }
    return Request::byName(name, std::move(values));
  });
  m.def("_python_request", [](const py::handle& payload, const py::handle& tensors,
                              const py::handle& rrefs) {
    Request request;
    request.kind = CallKind::kPython;
    c10::IValue serialized = serializedValue(payload, tensors, rrefs);
    const auto& parts = serialized.toTupleRef().elements();
    request.args.assign(parts.begin(), parts.end());
    return request;
  });
  m.def("_invoke", [](int dst, Request request, double timeout, const py::object& py_future,
                      const py::object& decode) {
    return invoke(dst, std::move(request), timeout, py_future, decode);
  });
  m.def("_remote", [](int dst, Request request, double timeout) {
    auto agent = Agent::current();
    rpc::RRefPtr rref;
    {
      py::gil_scoped_release no_gil;
      rref = agent->remote(dst, std::move(request), timeout);
    }
    return torch::jit::toPyObject(c10::IValue(std::move(rref)));
  });
}

}  // namespace distgrad::python
