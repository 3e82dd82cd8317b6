#include "optim/optimizer_registry.h"

namespace distgrad::optim {

OptimizerRegistry& OptimizerRegistry::get() {
  static OptimizerRegistry registry;
  return registry;
}

std::unique_ptr<OptimizerRegistry::Entry> OptimizerRegistry::add(
    std::shared_ptr<LocalOptimizer> optimizer) {
  std::lock_guard<std::mutex> lock(mu_);
  int64_t id = ++last_id_;
  optimizers_.emplace(id, std::move(optimizer));
  return std::make_unique<Entry>(*this, id);
}

std::shared_ptr<LocalOptimizer> OptimizerRegistry::find(int64_t id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = optimizers_.find(id);
  return it == optimizers_.end() ? nullptr : it->second;
}

size_t OptimizerRegistry::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return optimizers_.size();
}

void OptimizerRegistry::remove(int64_t id) {
  std::shared_ptr<LocalOptimizer> removed;  // destroyed after the lock is released
  std::lock_guard<std::mutex> lock(mu_);
  auto it = optimizers_.find(id);
  if (it != optimizers_.end()) {
    removed = std::move(it->second);
    optimizers_.erase(it);
  }
}

}  // namespace distgrad::optim
