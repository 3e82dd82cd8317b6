#include "rpc/callback_pool.h"

#include "common/log.h"

#include <chrono>
#include <exception>
#include <system_error>
#include <thread>

namespace distgrad::rpc {

namespace {

// How long a thread with nothing to do waits before it ends.
constexpr auto kIdleLifetime = std::chrono::seconds(10);

void runGuarded(const std::function<void()>& task) {
  try {
    task();
  } catch (const std::exception& e) {
    logWarning("callback pool", std::string("task raised: ") + e.what());
  }
}

}  // namespace

CallbackPool::CallbackPool(int max_threads)
    : max_threads_(max_threads), state_(std::make_shared<State>()) {}

CallbackPool::~CallbackPool() {
  stop();
}

void CallbackPool::run(std::function<void()> task) {
  {
    std::unique_lock<std::mutex> lock(state_->mu);
    if (!state_->stopping) {
      state_->tasks.push_back(std::move(task));
      if (state_->idle > 0) {
        state_->wakeup.notify_one();
        return;
      }
      if (state_->threads >= max_threads_) {
        return;  // queued: the next thread that is done takes it
      }
      ++state_->threads;
      lock.unlock();
      try {
        std::thread([state = state_] { work(state); }).detach();
      } catch (const std::system_error& e) {
        // No thread to spare: the task waits for one that is done.
        logWarning("callback pool", std::string("cannot start a thread: ") + e.what());
        std::lock_guard<std::mutex> relock(state_->mu);
        --state_->threads;
      }
      return;
    }
  }
  runGuarded(task);
}

void CallbackPool::stop() {
  std::deque<std::function<void()>> left;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    if (state_->stopping) {
      return;
    }
    state_->stopping = true;
    left.swap(state_->tasks);
  }
  state_->wakeup.notify_all();
  for (const auto& task : left) {
    runGuarded(task);
  }
}

void CallbackPool::work(const std::shared_ptr<State>& state) {
  std::unique_lock<std::mutex> lock(state->mu);
  while (true) {
    ++state->idle;
    bool woke = state->wakeup.wait_for(lock, kIdleLifetime,
                                       [&] { return state->stopping || !state->tasks.empty(); });
    --state->idle;
    if (!woke || state->tasks.empty()) {
      --state->threads;
      return;  // idle for long, or stopping with nothing left
    }
    auto task = std::move(state->tasks.front());
    state->tasks.pop_front();
    lock.unlock();
    runGuarded(task);
    // Destroyed without the lock: what a task holds may take the GIL.
    task = nullptr;
    lock.lock();
  }
}

}  // namespace distgrad::rpc
