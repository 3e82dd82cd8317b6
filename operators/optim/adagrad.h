#pragma once

#include "optim/local_optimizer.h"

namespace distgrad::optim {

struct AdagradOptions {
  double lr = 0;
  double lr_decay = 0;
  double weight_decay = 0;
  double eps = 0;
};

// torch.optim.Adagrad for parameters on the CPU (where torch runs its
// single-tensor implementation), with maximize, foreach, fused and
// differentiable at their defaults: the same tensor operations in the same
// order, dense, complex and sparse gradients alike, so the results are
// equal bit for bit. It starts from the state torch.optim.Adagrad makes
// (per parameter: the step count, a scalar tensor of torch's scalar dtype,
// and the sum of squares, filled with initial_accumulator_value), and
// distgrad.optim builds one first to validate the options.
//
// Threading: see LocalOptimizer.
class Adagrad : public LocalOptimizer {
 public:
  Adagrad(std::vector<at::Tensor> params, AdagradOptions options, std::vector<at::Tensor> steps,
          std::vector<at::Tensor> sums);

  void step(const std::vector<at::Tensor>& grads) override;

 private:
  const AdagradOptions options_;
  // One per parameter; updated in place.
  const std::vector<at::Tensor> steps_;  // guarded by stepMutex()
  const std::vector<at::Tensor> sums_;   // guarded by stepMutex()
};

}  // namespace distgrad::optim
