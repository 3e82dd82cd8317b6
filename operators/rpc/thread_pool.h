#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace distgrad::rpc {

// A fixed set of threads running tasks in FIFO order. A task wakes the
// thread that went idle last: its caches, and the Python thread state and
// malloc arena it keeps, are the warmest (waking them in turn made every
// call run on a cold thread, which doubled the cost of a Python call).
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

  // Tasks queued or running now, less those blocked in a WaitScope: what
  // would compete for a core with a thread that polls.
  int computing() const { return busy_ - waiting_; }

  // Marks a task of the calling pool thread as blocked, waiting for a
  // result (a nested call's reply), for the scope's lifetime; nested scopes
  // count once. Does nothing on threads of no pool.
  class WaitScope {
   public:
    WaitScope();
    ~WaitScope();
    WaitScope(const WaitScope&) = delete;
    WaitScope& operator=(const WaitScope&) = delete;

   private:
    ThreadPool* const pool_;
  };

  void stop();

 private:
  // A thread waiting for a task.
  struct Idle {
    std::condition_variable wakeup;
    bool woken = false;  // guarded by mu_
  };

  void work();
  static void runGuarded(const std::function<void()>& task);

  std::mutex mu_;  // guards tasks_, idle_ and stopping_
  std::deque<std::function<void()>> tasks_;
  std::vector<Idle*> idle_;  // the last one went idle last
  std::condition_variable all_idle_;  // for the constructor
  bool stopping_ = false;
  const size_t num_threads_;
  std::vector<std::thread> threads_;
  std::atomic<int> busy_{0};
  std::atomic<int> waiting_{0};  // tasks in a WaitScope
};

}  // namespace distgrad::rpc
