#include "autograd/dist_engine.h"

#include "autograd/context_container.h"
#include "autograd/messages.h"

#include <c10/util/Exception.h>
#include <torch/csrc/autograd/variable.h>

namespace distgrad::autograd {

namespace {

// Sends a RecvRpcBackward's gradients to the worker holding its send node.
FuturePtr sendGradients(const BackwardPass& pass, const RecvRpcBackward& node,
                        torch::autograd::variable_list grads) {
  PropagateGradients message;
  message.context_id = pass.contextId();
  message.pass_id = pass.id();
  message.message_id = node.messageId();
  message.retain_graph = pass.retainGraph();
  message.grads = std::move(grads);
  rpc::Request request;
  request.kind = rpc::CallKind::kInternal;
  request.target = PropagateGradients::kHandler;
  request.args = message.toArgs();
  // No timeout: a pass takes as long as the graph behind it; a lost peer
  // still fails it at once.
  return rpc::Agent::current()->call(node.peer(), std::move(request), 0);
}

std::shared_ptr<BackwardPass> makePass(
    int64_t pass_id, bool retain_graph, const std::shared_ptr<Context>& context,
    const torch::autograd::edge_list& root_edges,
    const std::vector<c10::intrusive_ptr<SendRpcBackward>>& send_nodes) {
  auto agent = rpc::Agent::currentOrNull();
  std::string worker = agent ? agent->self().name : "local";
  auto offload = [](std::function<void()> work) {
    rpc::Agent::current()->pool().run(std::move(work));
  };
  return std::make_shared<BackwardPass>(pass_id, retain_graph, context, worker, &sendGradients,
                                        offload, root_edges, send_nodes);
}

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
                          bool retain_graph) {
  checkRoots(roots);
  auto context = ContextContainer::get().retrieve(context_id);
  torch::autograd::edge_list root_edges;
  root_edges.reserve(roots.size());
  for (const auto& root : roots) {
    root_edges.push_back(torch::autograd::impl::gradient_edge(root));
  }
  int64_t pass_id = ContextContainer::get().newId();
  auto pass = context->passFor(pass_id, [&](const auto& send_nodes) {
    return makePass(pass_id, retain_graph, context, root_edges, send_nodes);
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
          return makePass(message.pass_id, message.retain_graph, context, {}, send_nodes);
        });
        return pass->runFromSendNode(message.message_id, std::move(message.grads));
      },
      rpc::Agent::HandlerThread::kReader);
}

}  // namespace distgrad::autograd
