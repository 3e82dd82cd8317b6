#include "optim/native_step.h"

#include "autograd/context_container.h"
#include "autograd/current_context.h"
#include "common/errors.h"
#include "common/thread_role.h"
#include "optim/messages.h"
#include "optim/optimizer_registry.h"
#include "optim/step_mutex.h"
#include "rpc/reader_work.h"

#include <ATen/core/grad_mode.h>
#include <c10/util/Exception.h>

#include <atomic>

namespace distgrad::optim {

namespace {

// A step on the reader thread saves a thread hop (as much as a loopback
// round trip), but must stay short: at most this many parameters (a few
// small tensor operations each) with at most rpc::kMaxReaderInputBytes of
// parameters and gradients.
constexpr size_t kMaxReaderParameters = 16;

std::atomic<int64_t> g_steps{0};

std::string thisWorker() {
  auto agent = rpc::Agent::currentOrNull();
  return agent ? agent->self().name : "this worker";
}

// An optimizer and the gradients of its step, looked up without blocking.
struct PreparedStep {
  std::shared_ptr<LocalOptimizer> optimizer;
  std::vector<at::Tensor> grads;

  PreparedStep(int64_t optimizer_id, int64_t context_id, bool context_carried) {
    optimizer = OptimizerRegistry::get().find(optimizer_id);
    TORCH_CHECK_VALUE(optimizer != nullptr, "worker '", thisWorker(), "' holds no optimizer ",
                      optimizer_id, " (never created there, or freed with its DistributedOptimizer)");
    auto& contexts = autograd::ContextContainer::get();
    auto context = context_carried ? contexts.retrieveOrCreate(context_id)
                                   : contexts.retrieve(context_id);
    grads = context->gradientsOf(optimizer->params());
  }

  bool fitsReaderThread() const {
    std::vector<at::Tensor> inputs;
    for (size_t i = 0; i < grads.size(); ++i) {
      if (grads[i].defined()) {
        inputs.push_back(optimizer->params()[i]);
        inputs.push_back(grads[i]);
      }
    }
    return inputs.size() <= 2 * kMaxReaderParameters &&
        rpc::tensorBytes(inputs) <= rpc::kMaxReaderInputBytes;
  }

  // With stepMutex() held.
  void run() const {
    at::NoGradGuard no_grad;  // as torch.optim steps
    optimizer->step(grads);
    ++g_steps;
  }
};

rpc::FuturePtr completed() {
  auto future = c10::make_intrusive<c10::ivalue::Future>(c10::NoneType::get());
  future->markCompleted(c10::IValue());
  return future;
}

rpc::FuturePtr failed(std::exception_ptr error, const std::string& worker) {
  auto future = c10::make_intrusive<c10::ivalue::Future>(c10::NoneType::get());
  future->setError(std::make_exception_ptr(RemoteError::describe(std::move(error), worker)));
  return future;
}

}  // namespace

void install(rpc::Agent& agent) {
  rpc::Agent* served = &agent;  // the agent owns the handler
  agent.registerInternalHandler(
      StepOptimizer::kHandler,
      [served](int src, std::vector<c10::IValue> args) -> rpc::FuturePtr {
        auto message = StepOptimizer::fromArgs(args);
        auto step = std::make_shared<PreparedStep>(message.optimizer_id, message.context_id,
                                                   message.context_carried);
        if (step->fitsReaderThread()) {
          std::unique_lock<std::timed_mutex> lock(stepMutex(), std::try_to_lock);
          if (lock.owns_lock()) {
            step->run();
            return completed();
          }
        }
        auto done = c10::make_intrusive<c10::ivalue::Future>(c10::NoneType::get());
        served->pool().run([step, done] {
          try {
            std::lock_guard<std::timed_mutex> lock(stepMutex());
            step->run();
            done->markCompleted(c10::IValue());
          } catch (...) {
            done->setError(std::current_exception());
          }
        });
        return done;
      },
      rpc::Agent::HandlerThread::kReader);
}

void stepHere(int64_t optimizer_id, int64_t context_id, bool context_carried) {
  checkNotCalledFrom({ThreadRole::kReader}, "optim::stepHere");
  PreparedStep step(optimizer_id, context_id, context_carried);
  std::lock_guard<std::timed_mutex> lock(stepMutex());
  step.run();
}

std::vector<rpc::FuturePtr> stepAll(const std::vector<StepTarget>& targets, int64_t context_id) {
  auto agent = rpc::Agent::current();
  auto context = autograd::ContextContainer::get().retrieve(context_id);
  // What an RPC made here would carry (see autograd/rpc_recording.h).
  bool carried = autograd::currentContextId() == context_id && c10::GradMode::is_enabled();
  const std::string& me = agent->self().name;
  std::vector<rpc::FuturePtr> futures(targets.size());
  for (size_t i = 0; i < targets.size(); ++i) {
    if (targets[i].rank == agent->rank()) {
      continue;  // stepped below, while the others step
    }
    if (carried) {
      context->addKnownWorker(targets[i].rank);  // so that releasing the context reaches it
    }
    rpc::Request request;
    request.kind = rpc::CallKind::kInternal;
    request.target = StepOptimizer::kHandler;
    request.args = StepOptimizer{targets[i].optimizer_id, context_id, carried}.toArgs();
    try {
      futures[i] = agent->call(targets[i].rank, std::move(request), -1);
    } catch (...) {
      futures[i] = failed(std::current_exception(), me);
    }
  }
  for (size_t i = 0; i < targets.size(); ++i) {
    if (!futures[i]) {
      try {
        stepHere(targets[i].optimizer_id, context_id, false);
        futures[i] = completed();
      } catch (...) {
        futures[i] = failed(std::current_exception(), me);
      }
    }
  }
  return futures;
}

void throwFirstError(const std::vector<StepTarget>& targets,
                     const std::vector<rpc::FuturePtr>& futures) {
  auto agent = rpc::Agent::current();
  for (size_t i = 0; i < futures.size(); ++i) {
    if (futures[i]->hasError()) {
      RemoteError error = RemoteError::describe(futures[i]->exception_ptr(), agent->self().name);
      throw RemoteError(error.typeName(),
                        "Error running optimizer on " + agent->worker(targets[i].rank).name +
                            ": " + error.message(),
                        error.worker());
    }
  }
}

std::map<std::string, int64_t> debugInfo() {
  return {
      {"num_native_optimizers", static_cast<int64_t>(OptimizerRegistry::get().size())},
      {"num_native_optimizer_steps", g_steps.load()},
  };
}

}  // namespace distgrad::optim
