#pragma once

#include <algorithm>
#include <chrono>

namespace distgrad::transport {

// How long a reader polls its socket before it blocks, learned from how long
// its frames took to come.
//
// Why: a poll that catches its frame saves a blocking read's wakeup (on a VM
// whose idle cores halt, 40-90 µs of CPU and as much latency); a poll that
// runs out costs its whole window in CPU that other threads may need. How
// long a frame takes depends on what the peer does with the last one: a
// small builtin call is answered in 20-40 µs, a Python call in 100-250 µs
// (the callee's pool thread has to wake), a training loop's next request
// may come milliseconds later. So the window grows to twice the time a
// frame took, counted from the start of the read whether the reader polled
// or blocked for it (a frame that came after a blocking read shows how long
// a poll would have needed: a window that ran out learns to catch the next
// one), up to kMax; a frame that took longer than kMax says the peer is
// slow now, and halves the window (down to kMin).
class PollWindow {
 public:
  static constexpr std::chrono::microseconds kMin{25};
  static constexpr std::chrono::microseconds kStart{100};
  static constexpr std::chrono::microseconds kMax{800};

  std::chrono::microseconds current() const { return current_; }

  // A frame came `waited` after the read began.
  void frameAfter(std::chrono::steady_clock::duration waited) {
    const auto twice = std::chrono::duration_cast<std::chrono::microseconds>(2 * waited);
    current_ = waited > kMax ? std::max(current_ / 2, kMin) : std::max(current_, std::min(twice, kMax));
  }

 private:
  std::chrono::microseconds current_ = kStart;
};

}  // namespace distgrad::transport
