#include "python/call_completion.h"

namespace distgrad::python {

namespace py = pybind11;

namespace {

// The attribute of a distgrad rpc_async future that holds its completion.
constexpr const char* kAttribute = "_distgrad_completion";

}  // namespace

CallCompletion::CallCompletion(const std::shared_ptr<rpc::Agent>& agent, const rpc::FuturePtr& reply,
                               Complete complete)
    : agent_(agent), reply_(reply), complete_(std::move(complete)) {}

void CallCompletion::onReply(rpc::Agent& agent, const rpc::FuturePtr& reply) {
  int state = state_.load();
  while (true) {
    if (state == kPending && state_.compare_exchange_weak(state, kPosted)) {
      arrived_.reset();  // set only if a waiter gave the completion back meanwhile
      agent.callbacks().run([reply, complete = complete_] { complete(reply); });
      return;
    }
    if (state == kClaimed) {
      arrived_ = reply;  // for the waiter, which reads it once it sees kReplyForWaiter
      if (state_.compare_exchange_weak(state, kReplyForWaiter)) {
        return;
      }
    }
    // A failed exchange reloaded state (a waiter claimed or gave back). A
    // reply completes once: the other states come after this call.
    TORCH_INTERNAL_ASSERT(state == kPending || state == kClaimed, "a call's reply completed twice");
  }
}

void CallCompletion::completeHere() {
  TORCH_INTERNAL_ASSERT(!PyGILState_Check(), "completeHere() is called without the GIL");
  int state = kPending;
  if (!state_.compare_exchange_strong(state, kClaimed)) {
    return;  // completed on the pool, or another thread waits too
  }
  auto agent = agent_.lock();
  auto reply = reply_.lock();
  if (agent && reply) {
    agent->pollForReply(reply);
  }
  state = kClaimed;
  if (state_.compare_exchange_strong(state, kPending)) {
    return;  // no reply yet: the callback pool completes the future
  }
  // kReplyForWaiter: the reply came while this thread held the completion.
  state_.store(kPosted);
  rpc::FuturePtr arrived = std::move(arrived_);
  complete_(arrived);
}

std::shared_ptr<CallCompletion> CallCompletion::of(const py::handle& py_future) {
  TORCH_INTERNAL_ASSERT(PyGILState_Check(), "CallCompletion::of() is called with the GIL");
  py::object kept = py::getattr(py_future, kAttribute, py::none());
  if (kept.is_none()) {
    return nullptr;
  }
  return *static_cast<std::shared_ptr<CallCompletion>*>(kept.cast<py::capsule>().get_pointer());
}

void CallCompletion::attach(const py::handle& py_future, std::shared_ptr<CallCompletion> completion) {
  TORCH_INTERNAL_ASSERT(PyGILState_Check(), "CallCompletion::attach() is called with the GIL");
  auto* kept = new std::shared_ptr<CallCompletion>(std::move(completion));
  py_future.attr(kAttribute) = py::capsule(kept, [](void* p) {
    delete static_cast<std::shared_ptr<CallCompletion>*>(p);
  });
}

}  // namespace distgrad::python
