#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace distgrad::rpc {

// Runs the completions of futures handed to users (a torch.futures.Future
// runs its .then() callbacks inside its completion) off the threads the
// runtime needs. A user callback may block, even on another distgrad call:
// when no thread is idle the pool starts another one (up to max_threads)
// instead of queueing behind it, so callbacks starve neither the runtime
// nor each other. Threads stay until stop().
//
// Threading: run() and stop() may be called from any thread but a pool
// thread (run() also from a pool thread).
class CallbackPool {
 public:
  explicit CallbackPool(int max_threads);
  ~CallbackPool();
  CallbackPool(const CallbackPool&) = delete;
  CallbackPool& operator=(const CallbackPool&) = delete;

  // Runs task on a pool thread; after stop(), at once on the caller's thread.
  void run(std::function<void()> task);

  // Runs what is queued, then joins the threads, waiting a second at most
  // for a callback that blocks (its thread is left to end when it returns).
  void stop();

 private:
  // Shared with the threads, which may outlive the pool (see stop()).
  struct State {
    std::mutex mu;  // guards everything below
    std::condition_variable wakeup;
    std::condition_variable ended;  // a thread has ended
    std::deque<std::function<void()>> tasks;
    int threads = 0;  // started and not ended
    int idle = 0;
    bool stopping = false;
  };
  struct Thread {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> ended;
  };

  static void work(const std::shared_ptr<State>& state, const std::shared_ptr<std::atomic<bool>>& ended);

  const int max_threads_;
  const std::shared_ptr<State> state_;
  std::mutex threads_mu_;  // guards threads_
  std::vector<Thread> threads_;
};

}  // namespace distgrad::rpc
