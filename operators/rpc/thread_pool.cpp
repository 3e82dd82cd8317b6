#include "rpc/thread_pool.h"

#include "common/log.h"
#include "common/thread_role.h"

#include <exception>

namespace distgrad::rpc {

ThreadPool::ThreadPool(int num_threads) {
  threads_.reserve(num_threads);
  for (int i = 0; i < num_threads; ++i) {
    threads_.emplace_back([this] { work(); });
  }
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
      wakeup_.notify_one();
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
  }
  wakeup_.notify_all();
  for (auto& t : threads_) {
    t.join();
  }
}

void ThreadPool::work() {
  setCurrentThreadRole(ThreadRole::kPool);
  while (true) {
    std::function<void()> task;
    {
      std::unique_lock<std::mutex> lock(mu_);
      wakeup_.wait(lock, [this] { return stopping_ || !tasks_.empty(); });
      if (tasks_.empty()) {
        return;  // stopping, and everything queued has run
      }
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    runGuarded(task);
    --busy_;
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
