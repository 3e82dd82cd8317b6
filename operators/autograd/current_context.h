#pragma once

#include <cstdint>

namespace distgrad::autograd {

constexpr int64_t kNoContext = -1;

// The distributed autograd context current on this thread, or kNoContext.
//
// It lives in a custom c10::ThreadLocalDebugInfo slot, which is part of
// at::ThreadLocalState: TorchScript carries it into tasks started by
// torch.jit._fork and into the continuation of a function resumed on another
// thread after wait(), and the RPC layer sets it around requests it serves.
// A plain thread_local would follow none of these.
int64_t currentContextId();

// Makes context_id current on this thread for the guard's lifetime.
class CurrentContextGuard {
 public:
  explicit CurrentContextGuard(int64_t context_id);
  ~CurrentContextGuard();
  CurrentContextGuard(const CurrentContextGuard&) = delete;
  CurrentContextGuard& operator=(const CurrentContextGuard&) = delete;
};

// For a Python `with` block, which cannot hold a C++ guard: push makes
// context_id current until the matching pop on the same thread.
void pushCurrentContext(int64_t context_id);
void popCurrentContext();

}  // namespace distgrad::autograd
