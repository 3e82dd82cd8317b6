#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

namespace distgrad::optim {

// An optimizer over parameters held by this worker, stepped with gradients
// it is handed (those of a distributed autograd context) rather than with
// the parameters' .grad, which it never reads or writes.
//
// Threading: step() must run with stepMutex() (optim/step_mutex.h) held and
// grad mode off; the state it keeps between steps is guarded by that mutex.
class LocalOptimizer {
 public:
  explicit LocalOptimizer(std::vector<at::Tensor> params) : params_(std::move(params)) {}
  virtual ~LocalOptimizer() = default;
  LocalOptimizer(const LocalOptimizer&) = delete;
  LocalOptimizer& operator=(const LocalOptimizer&) = delete;

  const std::vector<at::Tensor>& params() const { return params_; }

  // Updates params() in place. grads[i] is the gradient of params()[i], or
  // undefined for a parameter without one, which is left alone (its state
  // too). Throws what the tensor operations throw (c10::Error).
  virtual void step(const std::vector<at::Tensor>& grads) = 0;

 private:
  const std::vector<at::Tensor> params_;
};

}  // namespace distgrad::optim
