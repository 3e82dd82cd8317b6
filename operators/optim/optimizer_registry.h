#pragma once

#include "optim/local_optimizer.h"

#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>

namespace distgrad::optim {

// The native optimizers of this worker, by id, so that a step request from
// another worker finds its optimizer without Python. An optimizer is
// registered for the lifetime of the Entry add() returns (distgrad.optim's
// owner-side object, kept alive by the DistributedOptimizer's RRef), so it
// goes away with the last reference to it, like any RRef value.
//
// Threading: every method is safe from any thread; mu_ guards all members.
// find() is short (a lookup) and may run on reader threads.
class OptimizerRegistry {
 public:
  // Removes its optimizer from the registry when destroyed (a step under
  // way keeps the optimizer itself until it ends).
  class Entry {
   public:
    Entry(OptimizerRegistry& registry, int64_t id) : registry_(registry), id_(id) {}
    ~Entry() { registry_.remove(id_); }
    Entry(const Entry&) = delete;
    Entry& operator=(const Entry&) = delete;

    int64_t id() const { return id_; }

   private:
    OptimizerRegistry& registry_;
    const int64_t id_;
  };

  // The process's registry (the one requests use).
  static OptimizerRegistry& get();

  // Registers optimizer under a new id (ids start at 1 and are never reused).
  std::unique_ptr<Entry> add(std::shared_ptr<LocalOptimizer> optimizer);
  // Null if no optimizer has that id (never registered, or its Entry is gone).
  std::shared_ptr<LocalOptimizer> find(int64_t id) const;
  size_t size() const;

 private:
  void remove(int64_t id);

  mutable std::mutex mu_;
  int64_t last_id_ = 0;
  std::unordered_map<int64_t, std::shared_ptr<LocalOptimizer>> optimizers_;
};

}  // namespace distgrad::optim
