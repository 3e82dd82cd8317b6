#include "optim/adagrad.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

namespace distgrad::optim {

namespace {

// torch.optim.adagrad's _make_sparse: a sparse tensor shaped like grad.
at::Tensor makeSparse(const at::Tensor& grad, const at::Tensor& indices, const at::Tensor& values) {
  return at::sparse_coo_tensor(indices, values, grad.sizes());
}

}  // namespace

Adagrad::Adagrad(std::vector<at::Tensor> params, AdagradOptions options,
                 std::vector<at::Tensor> steps, std::vector<at::Tensor> sums)
    : LocalOptimizer(std::move(params)), options_(options), steps_(std::move(steps)),
      sums_(std::move(sums)) {
  TORCH_CHECK(steps_.size() == this->params().size() && sums_.size() == this->params().size(),
              "Adagrad: one step count and one sum per parameter");
}

void Adagrad::step(const std::vector<at::Tensor>& grads) {
  TORCH_CHECK(grads.size() == params().size(), "Adagrad step: ", grads.size(),
              " gradients for ", params().size(), " parameters");
  // Mirrors torch/optim/adagrad.py's _single_tensor_adagrad operation for
  // operation (the count is a tensor there too: it stops growing where its
  // dtype does).
  for (size_t i = 0; i < grads.size(); ++i) {
    if (!grads[i].defined()) {
      continue;
    }
    at::Tensor param = params()[i];
    at::Tensor grad = grads[i];
    at::Tensor sum = sums_[i];
    steps_[i].add_(1);
    const double step = steps_[i].item<double>();
    if (options_.weight_decay != 0) {
      TORCH_CHECK(!grad.is_sparse(), "weight_decay option is not compatible with sparse gradients");
      grad = grad.add(param, options_.weight_decay);
    }
    const double clr = options_.lr / (1 + (step - 1) * options_.lr_decay);
    if (grad.is_sparse()) {
      grad = grad.coalesce();  // the update is not linear: one value per index
      at::Tensor indices = grad._indices();
      at::Tensor values = grad._values();
      sum.add_(makeSparse(grad, indices, values.pow(2)));
      at::Tensor std_values = sum.sparse_mask(grad)._values().sqrt_().add_(options_.eps);
      param.add_(makeSparse(grad, indices, values / std_values), -clr);
    } else {
      if (param.is_complex()) {
        grad = at::view_as_real(grad);
        sum = at::view_as_real(sum);
        param = at::view_as_real(param);
      }
      sum.addcmul_(grad, grad, 1);
      at::Tensor std = sum.sqrt().add_(options_.eps);
      param.addcdiv_(grad, std, -clr);
    }
  }
}

}  // namespace distgrad::optim
