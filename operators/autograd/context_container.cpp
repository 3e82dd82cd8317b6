#include "autograd/context_container.h"

#include "common/errors.h"

#include <c10/util/Exception.h>

namespace distgrad::autograd {

ContextContainer& ContextContainer::get() {
  static ContextContainer container;
  return container;
}

void ContextContainer::setRank(int rank) {
  std::lock_guard<std::mutex> lock(mu_);
  prefix_ = static_cast<int64_t>(rank) << 48;
}

int64_t ContextContainer::newId() {
  std::lock_guard<std::mutex> lock(mu_);
  return prefix_ + ++counter_;
}

std::shared_ptr<Context> ContextContainer::create() {
  auto context = std::make_shared<Context>(newId());
  std::lock_guard<std::mutex> lock(mu_);
  contexts_.emplace(context->id(), context);
  return context;
}

std::shared_ptr<Context> ContextContainer::retrieve(int64_t id) const {
  auto context = retrieveOrNull(id);
  TORCH_CHECK_VALUE(context != nullptr, "distributed autograd context ", id,
                    " is not known on this worker (never created here, or already released)");
  return context;
}

std::shared_ptr<Context> ContextContainer::retrieveOrNull(int64_t id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = contexts_.find(id);
  return it == contexts_.end() ? nullptr : it->second;
}

std::shared_ptr<Context> ContextContainer::retrieveOrCreate(int64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = contexts_.find(id);
  if (it != contexts_.end()) {
    return it->second;
  }
  if (released_.count(id)) {
    throw DistError("distributed autograd context " + std::to_string(id) +
                    " has already been released");
  }
  auto context = std::make_shared<Context>(id);
  contexts_.emplace(id, context);
  return context;
}

std::shared_ptr<Context> ContextContainer::release(int64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = contexts_.find(id);
  if (it == contexts_.end()) {
    return nullptr;
  }
  auto context = std::move(it->second);
  contexts_.erase(it);
  released_.insert(id);
  released_order_.push_back(id);
  if (released_order_.size() > kMaxReleasedIds) {
    released_.erase(released_order_.front());
    released_order_.pop_front();
  }
  return context;
}

void ContextContainer::clear() {
  std::lock_guard<std::mutex> lock(mu_);
  contexts_.clear();
}

size_t ContextContainer::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return contexts_.size();
}

std::vector<int64_t> ContextContainer::createdBy(int rank) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<int64_t> ids;
  for (const auto& [id, context] : contexts_) {
    if ((id >> 48) == rank) {
      ids.push_back(id);
    }
  }
  return ids;
}

}  // namespace distgrad::autograd
