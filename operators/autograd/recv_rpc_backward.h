#pragma once

#include <torch/csrc/autograd/function.h>

#include <atomic>
#include <cstdint>

namespace distgrad::autograd {

// Recorded on the receiving side of an RPC whose tensors require grad: the
// grad_fn of the received tensors. In the distributed backward pass the
// engine sends its input gradients to the peer's SendRpcBackward
// (identified by message_id) instead of calling apply().
class RecvRpcBackward : public torch::autograd::Node {
 public:
  RecvRpcBackward(int64_t context_id, int peer, int64_t message_id)
      : context_id_(context_id), peer_(peer), message_id_(message_id) {}

  // Only reached when the local autograd engine runs a graph that crosses an
  // RPC; raises an error pointing to distgrad.autograd.backward.
  torch::autograd::variable_list apply(torch::autograd::variable_list&& grads) override;
  std::string name() const override { return "distgrad::RecvRpcBackward"; }

  // Records that a backward pass sends this node's gradients. Returns false
  // if an earlier pass that did not retain the graph already did.
  bool markRan(bool retain_graph) {
    return retain_graph ? !freed_.load() : !freed_.exchange(true);
  }

  int64_t contextId() const { return context_id_; }
  int peer() const { return peer_; }
  int64_t messageId() const { return message_id_; }

 private:
  const int64_t context_id_;
  const int peer_;
  const int64_t message_id_;
  std::atomic<bool> freed_{false};
};

}  // namespace distgrad::autograd
