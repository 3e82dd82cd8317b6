#pragma once

#include "optim/local_optimizer.h"

namespace distgrad::optim {

struct SgdOptions {
  double lr = 0;
  double momentum = 0;
  double dampening = 0;
  double weight_decay = 0;
  bool nesterov = false;
};

// torch.optim.SGD for parameters on the CPU (where torch runs its
// single-tensor implementation, no foreach or fused kernels), with
// maximize, foreach, fused and differentiable at their defaults: the same
// tensor operations in the same order, so the results are equal bit for bit.
// Options are not validated here: distgrad.optim builds torch.optim.SGD
// with the same arguments first, which raises torch's own errors.
//
// Threading: see LocalOptimizer.
class Sgd : public LocalOptimizer {
 public:
  Sgd(std::vector<at::Tensor> params, SgdOptions options);

  void step(const std::vector<at::Tensor>& grads) override;

 private:
  const SgdOptions options_;
  // One per parameter, undefined until its first step with momentum.
  std::vector<at::Tensor> momentum_buffers_;  // guarded by stepMutex()
};

}  // namespace distgrad::optim
