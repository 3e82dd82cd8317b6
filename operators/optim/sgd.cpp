#include "optim/sgd.h"

#include <c10/util/Exception.h>

namespace distgrad::optim {

Sgd::Sgd(std::vector<at::Tensor> params, SgdOptions options)
    : LocalOptimizer(std::move(params)), options_(options), momentum_buffers_(this->params().size()) {}

void Sgd::step(const std::vector<at::Tensor>& grads) {
  TORCH_CHECK(grads.size() == params().size(), "SGD step: ", grads.size(), " gradients for ",
              params().size(), " parameters");
  // Mirrors torch/optim/sgd.py's _single_tensor_sgd operation for operation.
  for (size_t i = 0; i < grads.size(); ++i) {
    if (!grads[i].defined()) {
      continue;
    }
    at::Tensor param = params()[i];
    at::Tensor grad = grads[i];
    if (options_.weight_decay != 0) {
      grad = grad.add(param, options_.weight_decay);
    }
    if (options_.momentum != 0) {
      at::Tensor& buffer = momentum_buffers_[i];
      if (!buffer.defined()) {
        buffer = grad.detach().clone();
      } else {
        buffer.mul_(options_.momentum).add_(grad, 1 - options_.dampening);
      }
      grad = options_.nesterov ? grad.add(buffer, options_.momentum) : buffer;
    }
    param.add_(grad, -options_.lr);
  }
}

}  // namespace distgrad::optim
