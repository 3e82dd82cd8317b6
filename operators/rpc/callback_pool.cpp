#include "rpc/callback_pool.h"

#include "common/log.h"
#include "common/thread_role.h"

#include <chrono>
#include <exception>
#include <system_error>

namespace distgrad::rpc {

namespace {

// How long stop() waits for the threads to end.
constexpr auto kStopWait = std::chrono::seconds(1);

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
      if (state_->idle > 0 || state_->threads >= max_threads_) {
        state_->wakeup.notify_one();
        return;  // an idle thread takes it, or the next that is done
      }
      ++state_->threads;
      lock.unlock();
      auto ended = std::make_shared<std::atomic<bool>>(false);
      try {
        std::lock_guard<std::mutex> threads_lock(threads_mu_);
        threads_.push_back({std::thread([state = state_, ended] { work(state, ended); }), ended});
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
    // Joining would wait for this thread itself.
    checkNotCalledFrom({ThreadRole::kCallback}, "CallbackPool::stop()");
    state_->stopping = true;
    left.swap(state_->tasks);
  }
  state_->wakeup.notify_all();
  for (const auto& task : left) {
    runGuarded(task);
  }
  {
    std::unique_lock<std::mutex> lock(state_->mu);
    state_->ended.wait_for(lock, kStopWait, [&] { return state_->threads == 0; });
  }
  std::lock_guard<std::mutex> threads_lock(threads_mu_);
  for (auto& t : threads_) {
    if (*t.ended) {
      t.thread.join();  // its thread-local state is gone before we return
    } else {
      t.thread.detach();  // blocked in a user callback
    }
  }
  threads_.clear();
}

void CallbackPool::work(const std::shared_ptr<State>& state,
                        const std::shared_ptr<std::atomic<bool>>& ended) {
  setCurrentThreadRole(ThreadRole::kCallback);
  std::unique_lock<std::mutex> lock(state->mu);
  while (true) {
    ++state->idle;
    state->wakeup.wait(lock, [&] { return state->stopping || !state->tasks.empty(); });
    --state->idle;
    if (state->tasks.empty()) {
      break;  // stopping, with nothing left
    }
    auto task = std::move(state->tasks.front());
    state->tasks.pop_front();
    lock.unlock();
    runGuarded(task);
    // Destroyed without the lock: what a task holds may take the GIL.
    task = nullptr;
    lock.lock();
  }
  --state->threads;
  *ended = true;
  state->ended.notify_all();
}

}  // namespace distgrad::rpc
