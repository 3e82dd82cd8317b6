#pragma once

#include "autograd/context.h"

#include <deque>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace distgrad::autograd {

// The contexts this worker holds, by id, and the ids it hands out. A context
// or message id is (rank << 48) + a counter, so ids are unique across a job
// and the creating worker of a context is id >> 48.
//
// Threading: every method is safe from any thread; mu_ guards all members.
class ContextContainer {
 public:
  static ContextContainer& get();

  // Sets the rank ids are made from; called when RPC starts.
  void setRank(int rank);

  std::shared_ptr<Context> create();
  // Throws c10::ValueError naming the id if it is unknown or released.
  std::shared_ptr<Context> retrieve(int64_t id) const;
  std::shared_ptr<Context> retrieveOrNull(int64_t id) const;
  // For a callee: the context of a request, created on first use. Throws
  // DistError for an id released here before (a late message).
  std::shared_ptr<Context> retrieveOrCreate(int64_t id);
  // Removes the context; returns it, or null if it was not held.
  std::shared_ptr<Context> release(int64_t id);
  // Drops every context (RPC shut down).
  void clear();

  size_t size() const;
  int64_t newId();
  // The ids of the contexts held here that worker rank created.
  std::vector<int64_t> createdBy(int rank) const;

 private:
  static constexpr size_t kMaxReleasedIds = 1 << 16;

  mutable std::mutex mu_;
  int64_t prefix_ = 0;
  int64_t counter_ = 0;
  std::unordered_map<int64_t, std::shared_ptr<Context>> contexts_;
  // Recently released ids, oldest first, so that a message arriving after
  // the release cannot bring a context back to life.
  std::deque<int64_t> released_order_;
  std::unordered_set<int64_t> released_;
};

}  // namespace distgrad::autograd
