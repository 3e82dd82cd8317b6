#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/core/ivalue.h>

#include <string>
#include <vector>

namespace distgrad::autograd {

// Internal RPC messages of distributed autograd: the handler name each is
// sent to, and its arguments encoded and decoded side by side.

// Gradients for the send node recorded as message_id in a context, sent by
// the worker whose RecvRpcBackward reached them in backward pass pass_id.
struct PropagateGradients {
  static constexpr const char* kHandler = "dist_autograd.propagate_gradients";

  int64_t context_id = 0;
  int64_t pass_id = 0;
  int64_t message_id = 0;
  bool retain_graph = false;
  // Bounds each gradient message of the pass (0: none), as the initiator's
  // backward() was given.
  double timeout_seconds = 0;
  std::vector<at::Tensor> grads;

  std::vector<c10::IValue> toArgs() const;
  // Throws std::runtime_error on malformed arguments.
  static PropagateGradients fromArgs(const std::vector<c10::IValue>& args);
};

// Tells a worker that a context is released; it releases its own copy and
// tells the workers it sent messages to in that context.
struct ReleaseContext {
  static constexpr const char* kHandler = "dist_autograd.release_context";

  int64_t context_id = 0;

  std::vector<c10::IValue> toArgs() const;
  static ReleaseContext fromArgs(const std::vector<c10::IValue>& args);
};

}  // namespace distgrad::autograd
