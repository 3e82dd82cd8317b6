#include "autograd/dist_autograd.h"

#include "autograd/backward_pass.h"
#include "autograd/context_container.h"
#include "autograd/current_context.h"
#include "autograd/dist_engine.h"
#include "autograd/installed_agent.h"
#include "autograd/messages.h"
#include "autograd/rpc_recording.h"
#include "common/errors.h"

namespace distgrad::autograd {

namespace {

// Releases the context here and tells the workers it reached, with
// notices that get no reply: they release their copy and tell their own
// peers.
void releaseEverywhere(int64_t context_id) {
  auto context = ContextContainer::get().release(context_id);
  auto agent = installedAgent();
  if (!context || !agent) {
    return;
  }
  for (int rank : context->knownWorkers()) {
    if (rank == agent->rank()) {
      continue;
    }
    rpc::Request request;
    request.kind = rpc::CallKind::kInternal;
    request.target = ReleaseContext::kHandler;
    request.args = ReleaseContext{context_id}.toArgs();
    agent->notify(rank, std::move(request));
  }
}

}  // namespace

void install(rpc::Agent& agent) {
  setInstalledAgent(agent.shared_from_this());
  ContextContainer::get().setRank(agent.rank());
  agent.setCallHooks(std::make_shared<RpcRecording>());
  DistEngine::install(agent);
  // A worker that died can no longer release the contexts it created: each
  // worker releases its copies (and tells the workers it reached, which may
  // not know of the death).
  agent.addPeerLostListener([](int rank) {
    for (int64_t context_id : ContextContainer::get().createdBy(rank)) {
      releaseEverywhere(context_id);
    }
  });
  agent.registerInternalHandler(
      ReleaseContext::kHandler, [](int src, std::vector<c10::IValue> args) {
        releaseEverywhere(ReleaseContext::fromArgs(args).context_id);
        auto done = c10::make_intrusive<c10::ivalue::Future>(c10::NoneType::get());
        done->markCompleted(c10::IValue());
        return done;
      },
      rpc::Agent::HandlerThread::kReader);
}

void uninstall() {
  ContextContainer::get().clear();
  setInstalledAgent(nullptr);
}

int64_t enterContext() {
  int64_t current = currentContextId();
  if (current != kNoContext) {
    throw DistError("distributed autograd context " + std::to_string(current) +
                    " is already current on this thread; contexts cannot be nested");
  }
  auto context = ContextContainer::get().create();
  pushCurrentContext(context->id());
  return context->id();
}

void exitContext(int64_t context_id) {
  if (currentContextId() == context_id) {
    popCurrentContext();
  }
  releaseEverywhere(context_id);
}

c10::Dict<at::Tensor, at::Tensor> getGradients(int64_t context_id) {
  return ContextContainer::get().retrieve(context_id)->gradients();
}

std::map<std::string, int64_t> debugInfo() {
  return {
      {"num_autograd_contexts", static_cast<int64_t>(ContextContainer::get().size())},
      {"num_current_backward_passes", BackwardPass::numRunning()},
  };
}

}  // namespace distgrad::autograd
