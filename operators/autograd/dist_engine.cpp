#include "autograd/dist_engine.h"

#include "autograd/context_container.h"
#include "autograd/messages.h"

#include <c10/util/Exception.h>
#include <torch/csrc/autograd/variable.h>

namespace distgrad::autograd {

namespace {

// Sends a RecvRpcBackward's gradients to the worker holding its send node;
// the message (and the work it starts there) must be answered within
// timeout_seconds (0: no limit), or the pass fails naming that worker.
FuturePtr sendGradients(const BackwardPass& pass, const RecvRpcBackward& node,
                        torch::autograd::variable_list grads, double timeout_seconds) {
  PropagateGradients message;
  message.context_id = pass.contextId();
  message.pass_id = pass.id();
  message.message_id = node.messageId();
  message.retain_graph = pass.retainGraph();
  message.timeout_seconds = timeout_seconds;
  message.grads = std::move(grads);
  rpc::Request request;
  request.kind = rpc::CallKind::kInternal;
  request.target = PropagateGradients::kHandler;
  request.args = message.toArgs();
  return rpc::Agent::current()->call(node.peer(), std::move(request), timeout_seconds);
}

std::shared_ptr<BackwardPass> makePass(
    int64_t pass_id, bool retain_graph, double timeout_seconds,
    const std::shared_ptr<Context>& context, const torch::autograd::edge_list& root_edges,
    const std::vector<c10::intrusive_ptr<SendRpcBackward>>& send_nodes) {
  auto agent = rpc::Agent::currentOrNull();
  std::string worker = agent ? agent->self().name : "local";
  auto offload = [](std::function<void()> work) {
    rpc::Agent::current()->pool().run(std::move(work));
  };
  auto send = [timeout_seconds](const BackwardPass& pass, const RecvRpcBackward& node,
                                torch::autograd::variable_list grads) {
    return sendGradients(pass, node, std::move(grads), timeout_seconds);
  };
  return std::make_shared<BackwardPass>(pass_id, retain_graph, context, worker, send, offload,
                                        root_edges, send_nodes);
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
    auto agent = rpc::Agent::currentOrNull();
    timeout_seconds = agent ? agent->defaultTimeout() : 0;
  }
  auto context = ContextContainer::get().retrieve(context_id);
  torch::autograd::edge_list root_edges;
  root_edges.reserve(roots.size());
  for (const auto& root : roots) {
    root_edges.push_back(torch::autograd::impl::gradient_edge(root));
  }
  int64_t pass_id = ContextContainer::get().newId();
  auto pass = context->passFor(pass_id, [&](const auto& send_nodes) {
    return makePass(pass_id, retain_graph, timeout_seconds, context, root_edges, send_nodes);
  });
  FuturePtr done = pass->runFromRoots(roots, root_edges);
  done->waitAndThrow();
}

void DistEngine::install(rpc::Agent& agent) {
  agent.registerInternalHandler(
      PropagateGradients::kHandler, [](int src, std::vector<c10::IValue> args) -> FuturePtr {
        auto message = PropagateGradients::fromArgs(args);
        auto context = ContextContainer::get().retrieve(message.context_id);
        auto pass = context->passFor(message.pass_id, [&](const auto& send_nodes) {
          // Messages this worker sends on get a little less time than the
          // one it answers, so that the worker that does not answer is the
          // one a timeout names, not each worker waiting behind it.
          return makePass(message.pass_id, message.retain_graph,
                          message.timeout_seconds * kNestedTimeoutShare, context, {}, send_nodes);
        });
        return pass->runFromSendNode(message.message_id, std::move(message.grads));
      },
      rpc::Agent::HandlerThread::kReader);
}

}  // namespace distgrad::autograd
