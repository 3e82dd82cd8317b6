#include "autograd/dist_engine.h"

#include "autograd/context_container.h"
#include "autograd/installed_agent.h"
#include "autograd/messages.h"
#include "common/errors.h"
#include "common/torch_private.h"
#include "rpc/thread_pool.h"

#include <c10/util/Exception.h>

#include <map>
#include <set>
#include <tuple>

namespace distgrad::autograd {

namespace {

// Sends a message of a pass to peer; the message (and the work it starts
// there) must be answered within timeout_seconds (0: no limit), or the pass
// fails naming that worker.
FuturePtr sendMessage(int peer, PropagateGradients message, double timeout_seconds) {
  message.timeout_seconds = timeout_seconds;
  rpc::Request request;
  request.kind = rpc::CallKind::kInternal;
  request.target = PropagateGradients::kHandler;
  request.args = message.toArgs();
  auto agent = installedAgent();
  if (!agent) {
    throw DistError("distgrad RPC has been shut down on this worker");
  }
  return agent->call(peer, std::move(request), timeout_seconds);
}

std::shared_ptr<BackwardPass> makePass(int64_t pass_id, bool retain_graph,
                                       double timeout_seconds,
                                       const std::shared_ptr<Context>& context,
                                       const torch::autograd::edge_list& root_edges,
                                       const ContextGraph& graph) {
  auto agent = installedAgent();
  int rank = agent ? agent->rank() : 0;
  std::string worker = agent ? agent->self().name : "local";
  // The pool of the agent the pass started with.
  auto offload = [weak = std::weak_ptr<rpc::Agent>(agent)](std::function<void()> work) {
    auto agent = weak.lock();
    if (!agent) {
      throw DistError("distgrad RPC has been shut down on this worker");
    }
    agent->pool().run(std::move(work));
  };
  auto send = [timeout_seconds](int peer, PropagateGradients message) {
    return sendMessage(peer, std::move(message), timeout_seconds);
  };
  return std::make_shared<BackwardPass>(pass_id, retain_graph, context, rank, worker, send,
                                        offload, root_edges, graph);
}

std::string workerName(int rank) {
  auto agent = installedAgent();
  return agent ? agent->worker(rank).name : "rank " + std::to_string(rank);
}

// After the initiator's task: while some worker still holds send nodes that
// learnt nothing (their receive nodes are on workers no message of the pass
// reached), asks those workers to join, which makes them declare what they
// cannot reach. Each round reaches new workers or decides send nodes; a
// round that changes nothing means the pass cannot complete.
void settleUndecided(BackwardPass& pass, const c10::List<int64_t>& first_reports,
                     double timeout_seconds) {
  std::map<int64_t, PassReport> latest;  // by worker
  auto absorb = [&](const c10::List<int64_t>& encoded) {
    for (auto& report : PassReport::parse(encoded)) {
      auto& slot = latest[report.worker];
      if (report.stamp > slot.stamp) {
        slot = std::move(report);
      }
    }
  };
  absorb(first_reports);
  using Waiting = std::tuple<int64_t, int64_t, int64_t>;  // (holder, peer, message id)
  std::set<Waiting> previous;
  while (true) {
    PassReport own = pass.report();
    latest[own.worker] = std::move(own);
    std::set<Waiting> waiting;
    std::set<int64_t> to_join;
    for (const auto& [worker, report] : latest) {
      for (const auto& u : report.undecided) {
        waiting.emplace(worker, u.peer, u.message_id);
        to_join.insert(u.peer);
      }
    }
    if (waiting.empty()) {
      return;
    }
    if (waiting == previous) {
      const auto& [holder, peer, message_id] = *waiting.begin();
      throw DistError("distributed backward pass in context " + std::to_string(pass.contextId()) +
                      " cannot complete: on " + workerName(holder) +
                      ", the send node of RPC message " + std::to_string(message_id) + " (to " +
                      workerName(peer) + ") received neither gradients nor the news that none "
                      "come");
    }
    previous = std::move(waiting);
    std::vector<FuturePtr> answers;
    for (int64_t peer : to_join) {
      PropagateGradients join;
      join.kind = PropagateGradients::kJoin;
      join.context_id = pass.contextId();
      join.pass_id = pass.id();
      join.message_id = -1;
      join.retain_graph = pass.retainGraph();
      answers.push_back(sendMessage(static_cast<int>(peer), std::move(join), timeout_seconds));
    }
    for (const auto& answer : answers) {
      {
        rpc::ThreadPool::WaitScope waiting;
        answer->waitAndThrow();
      }
      absorb(PassAnswer::fromIValue(answer->value()).reports);
    }
  }
}

constexpr double kNestedTimeoutShare = 0.9;

void checkRoots(const std::vector<at::Tensor>& roots) {
  TORCH_CHECK_VALUE(!roots.empty(), "distributed backward needs at least one root tensor");
  for (size_t i = 0; i < roots.size(); ++i) {
    const auto& root = roots[i];
    TORCH_CHECK_VALUE(root.defined(), "root ", i, " of distributed backward is undefined");
    TORCH_CHECK_VALUE(root.requires_grad(), "root ", i,
                      " of distributed backward does not require grad and has no grad_fn");
    TORCH_CHECK_VALUE(root.numel() == 1, "root ", i, " of distributed backward has ",
                      root.numel(), " elements; roots must be scalars (call .sum() first)");
  }
}

}  // namespace

void DistEngine::backward(int64_t context_id, const std::vector<at::Tensor>& roots,
                          bool retain_graph, double timeout_seconds) {
  checkRoots(roots);
  if (timeout_seconds < 0) {
    auto agent = installedAgent();
    timeout_seconds = agent ? agent->defaultTimeout() : 0;
  }
  auto context = ContextContainer::get().retrieve(context_id);
  torch::autograd::edge_list root_edges;
  root_edges.reserve(roots.size());
  for (const auto& root : roots) {
    root_edges.push_back(torch_private::gradient_edge(root));
  }
  int64_t pass_id = ContextContainer::get().newId();
  auto pass = context->passFor(pass_id, [&](const ContextGraph& graph) {
    return makePass(pass_id, retain_graph, timeout_seconds, context, root_edges, graph);
  });
  FuturePtr done = pass->runFromRoots(roots, root_edges);
  if (auto agent = installedAgent()) {
    agent->pollForReply(done);  // the pass ends with the answer to its last message sent
  }
  {
    rpc::ThreadPool::WaitScope waiting;
    done->waitAndThrow();
  }
  // The initiator's task answers nobody: it carries nothing.
  settleUndecided(*pass, PassAnswer::fromIValue(done->value()).reports, timeout_seconds);
}

void DistEngine::install(rpc::Agent& agent) {
  agent.registerInternalHandler(
      PropagateGradients::kHandler, [](int src, std::vector<c10::IValue> args) -> FuturePtr {
        auto message = PropagateGradients::fromArgs(args);
        auto context = ContextContainer::get().retrieve(message.context_id);
        auto pass = context->passFor(message.pass_id, [&](const ContextGraph& graph) {
          // Messages this worker sends on get a little less time than the
          // one it answers, so that the worker that does not answer is the
          // one a timeout names, not each worker waiting behind it.
          return makePass(message.pass_id, message.retain_graph,
                          message.timeout_seconds * kNestedTimeoutShare, context, {}, graph);
        });
        if (message.kind == PropagateGradients::kJoin) {
          return pass->runJoin();
        }
        return pass->runFromSendNode(src, message.message_id,
                                     message.kind == PropagateGradients::kAbsent,
                                     std::move(message.grads));
      },
      rpc::Agent::HandlerThread::kReader);
}

}  // namespace distgrad::autograd
