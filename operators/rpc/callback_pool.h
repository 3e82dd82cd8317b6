#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>

namespace distgrad::rpc {

// Runs the completions of futures handed to users (a torch.futures.Future
// runs its .then() callbacks inside its completion) off the threads the
// runtime needs. A user callback may block, even on another distgrad call:
// when no thread is idle the pool starts another one (up to max_threads)
// instead of queueing behind it, so callbacks starve neither the runtime
// nor each other. Threads idle for a while end.
//
// Threading: run() and stop() may be called from any thread, including a
// callback. stop() never waits for a callback that blocks: its thread ends
// when the callback returns.
class CallbackPool {
 public:
  explicit CallbackPool(int max_threads);
  ~CallbackPool();
  CallbackPool(const CallbackPool&) = delete;
  CallbackPool& operator=(const CallbackPool&) = delete;

  // Runs task on a pool thread; after stop(), at once on the caller's thread.
  void run(std::function<void()> task);

  // Runs what is queued, then lets every thread end.
  void stop();

 private:
  // Shared with the (detached) threads, which may outlive the pool.
  struct State {
    std::mutex mu;  // guards everything below
    std::condition_variable wakeup;
    std::deque<std::function<void()>> tasks;
    int threads = 0;
    int idle = 0;
    bool stopping = false;
  };

  static void work(const std::shared_ptr<State>& state);

  const int max_threads_;
  const std::shared_ptr<State> state_;
};

}  // namespace distgrad::rpc
