#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace distgrad::rpc {

// A fixed set of threads running tasks in FIFO order.
//
// Threading: run() may be called from any thread, including from a task.
// stop() runs the tasks already queued, then joins the threads; it must not
// be called from a pool thread. A task queued after stop() runs at once on
// the caller's thread, so work handed to the pool (such as completing a
// user's future) is never lost.
class ThreadPool {
 public:
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  void run(std::function<void()> task);

  // Tasks queued or running now.
  int busy() const { return busy_; }

  void stop();

 private:
  void work();
  static void runGuarded(const std::function<void()>& task);

  std::mutex mu_;  // guards tasks_ and stopping_
  std::condition_variable wakeup_;
  std::deque<std::function<void()>> tasks_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
  std::atomic<int> busy_{0};
};

}  // namespace distgrad::rpc
