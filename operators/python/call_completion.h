#pragma once

#include "rpc/agent.h"

#include <torch/csrc/utils/pybind.h>

#include <atomic>
#include <functional>
#include <memory>

namespace distgrad::python {

// How the torch.futures.Future of an rpc_async call gets completed from the
// call's reply: on the agent's callback pool, or by the thread that waits
// for it. A thread calling wait() reads the reply's connection itself
// (Agent::pollForReply) and, if the reply came while it did, completes the
// future (decoding a Python result) on its own thread once it has stopped
// reading: no callback thread to wake, and no wakeup of the waiter after it.
// Both are user code's threads: user callbacks never run on a reader.
class CallCompletion {
 public:
  // Completes the user's future from the reply (with its error, if any).
  using Complete = std::function<void(const rpc::FuturePtr& reply)>;

  CallCompletion(const std::shared_ptr<rpc::Agent>& agent, const rpc::FuturePtr& reply,
                 Complete complete);

  // Called when the reply has completed, on the thread that completed it:
  // posts the completion to agent's callback pool, unless a waiter holds
  // it (which then completes the future itself).
  void onReply(rpc::Agent& agent, const rpc::FuturePtr& reply);

  // Called by the thread waiting for the user's future, without the GIL.
  // Returns with the future completed or not: the wait that follows is
  // unchanged.
  void completeHere();

  // The CallCompletion kept with py_future (attach), or null. With the GIL.
  static std::shared_ptr<CallCompletion> of(const pybind11::handle& py_future);
  static void attach(const pybind11::handle& py_future, std::shared_ptr<CallCompletion> completion);

 private:
  // The reply moves kPending to kPosted, or kClaimed to kReplyForWaiter;
  // the waiter moves kPending to kClaimed, and back only from kClaimed. So
  // exactly one of them completes the future, whichever order they come in.
  enum State : int {
    kPending,         // no reply, no waiter
    kClaimed,         // a waiter reads the connection; a reply is left to it
    kReplyForWaiter,  // the reply came while claimed: the waiter completes
    kPosted,          // completed (or being completed) on the callback pool
  };

  std::atomic<int> state_{kPending};
  std::weak_ptr<rpc::Agent> agent_;  // for the waiter's poll only
  // Weak: the reply's callbacks hold this object until it completes.
  c10::weak_intrusive_ptr<c10::ivalue::Future> reply_;
  rpc::FuturePtr arrived_;  // written before kReplyForWaiter, read after it
  Complete complete_;
};

}  // namespace distgrad::python
