#pragma once

#include <torch/csrc/autograd/function.h>

namespace distgrad::autograd {

// Recorded on the sending side of an RPC whose tensors require grad. Its
// next edges are those tensors' gradient edges; in the backward pass its
// inputs are the gradients the receiving worker sends back, which it passes
// on unchanged. It is the one of the message message_id sent to peer.
class SendRpcBackward : public torch::autograd::Node {
 public:
  SendRpcBackward(const std::vector<at::Tensor>& sent, int peer, int64_t message_id);

  torch::autograd::variable_list apply(torch::autograd::variable_list&& grads) override;
  std::string name() const override { return "distgrad::SendRpcBackward"; }

  int peer() const { return peer_; }
  int64_t messageId() const { return message_id_; }

 private:
  const int peer_;
  const int64_t message_id_;
};

}  // namespace distgrad::autograd
