#pragma once

#include <torch/csrc/autograd/function.h>

namespace distgrad::autograd {

// Recorded on the sending side of an RPC whose tensors require grad. Its
// next edges are those tensors' gradient edges; in the backward pass its
// inputs are the gradients the receiving worker sends back, which it passes
// on unchanged.
class SendRpcBackward : public torch::autograd::Node {
 public:
  explicit SendRpcBackward(const std::vector<at::Tensor>& sent);

  torch::autograd::variable_list apply(torch::autograd::variable_list&& grads) override;
  std::string name() const override { return "distgrad::SendRpcBackward"; }
};

}  // namespace distgrad::autograd
