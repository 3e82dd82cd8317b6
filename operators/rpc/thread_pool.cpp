#include "rpc/thread_pool.h"

#include "common/log.h"
#include "common/thread_role.h"

#include <algorithm>
#include <exception>

namespace distgrad::rpc {

namespace {

// The pool whose thread this is, for WaitScope.
thread_local ThreadPool* current_pool = nullptr;
// WaitScopes the calling pool thread is in.
thread_local int wait_depth = 0;

}  // namespace

// Only a thread's outermost WaitScope counts: its task waits once.
ThreadPool::WaitScope::WaitScope() : pool_(current_pool && wait_depth++ == 0 ? current_pool : nullptr) {
  if (pool_ != nullptr) {
    ++pool_->waiting_;
  }
}

ThreadPool::WaitScope::~WaitScope() {
  if (current_pool != nullptr) {
    --wait_depth;
  }
  if (pool_ != nullptr) {
    --pool_->waiting_;
  }
}

ThreadPool::ThreadPool(int num_threads) : num_threads_(num_threads) {
  threads_.reserve(num_threads);
  for (int i = 0; i < num_threads; ++i) {
    threads_.emplace_back([this] { work(); });
  }
  // Every thread idle before the first task: the order of idle_ is then
  // the pool's, not the order in which threads happened to start.
  std::unique_lock<std::mutex> lock(mu_);
  all_idle_.wait(lock, [&] { return idle_.size() == num_threads_; });
}

ThreadPool::~ThreadPool() {
  stop();
}

void ThreadPool::run(std::function<void()> task) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!stopping_) {
      ++busy_;
      tasks_.push_back(std::move(task));
      if (!idle_.empty()) {
        Idle* thread = idle_.back();
        idle_.pop_back();
        thread->woken = true;
        thread->wakeup.notify_one();
      }
      return;
    }
  }
  runGuarded(task);
}

void ThreadPool::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) {
      return;
    }
    // Joining would wait for this thread itself.
    checkNotCalledFrom({ThreadRole::kPool}, "ThreadPool::stop()");
    stopping_ = true;
    for (Idle* thread : idle_) {
      thread->wakeup.notify_one();
    }
  }
  for (auto& t : threads_) {
    t.join();
  }
}

void ThreadPool::work() {
  setCurrentThreadRole(ThreadRole::kPool);
  current_pool = this;
  Idle self;
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    if (!tasks_.empty()) {
      std::function<void()> task = std::move(tasks_.front());
      tasks_.pop_front();
      lock.unlock();
      runGuarded(task);
      task = nullptr;  // what it holds is released outside the lock
      lock.lock();
      // Under the lock: once busy() reads 0, this thread is idle on top of
      // idle_ before a new task can be queued.
      --busy_;
      continue;
    }
    if (stopping_) {
      return;  // everything queued has run
    }
    self.woken = false;
    idle_.push_back(&self);
    if (idle_.size() == num_threads_) {
      all_idle_.notify_all();
    }
    self.wakeup.wait(lock, [&] { return self.woken || stopping_; });
    if (!self.woken) {
      idle_.erase(std::find(idle_.begin(), idle_.end(), &self));
    }
  }
}

void ThreadPool::runGuarded(const std::function<void()>& task) {
  try {
    task();
  } catch (const std::exception& e) {
    // Tasks report their own errors through futures; this is a last guard
    // so that a bug cannot take the worker down.
    logWarning("thread pool", std::string("task raised: ") + e.what());
  }
}

}  // namespace distgrad::rpc
