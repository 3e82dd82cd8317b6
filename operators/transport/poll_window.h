#pragma once

#include <algorithm>
#include <chrono>

namespace distgrad::transport {

// How long a reader polls its socket before it blocks, learned from how its
// last polls ended.
//
// Why: a poll that catches its frame saves a blocking read's wakeup (on a VM
// whose idle cores halt, 40-90 µs of CPU and as much latency); a poll that
// runs out costs its whole window in CPU that other threads may need. How
// long a frame takes to come depends on what the peer does with the last
// one: a small builtin call is answered in 20-40 µs, a Python call in
// 100-200 µs (its pool thread has to wake), a training step's next request
// may come milliseconds later. So the window doubles after a poll that
// caught a frame (up to kMax) and halves after one that ran out (down to
// kMin): a connection whose frames come while it polls polls long enough to
// catch the slower of them, one whose frames do not stops spending CPU.
class PollWindow {
 public:
  static constexpr std::chrono::microseconds kMin{25};
  static constexpr std::chrono::microseconds kStart{100};
  static constexpr std::chrono::microseconds kMax{800};

  std::chrono::microseconds current() const { return current_; }
  // A frame came while the reader polled.
  void caught() { current_ = std::min(current_ * 2, kMax); }
  // The window ended with no frame.
  void ranOut() { current_ = std::max(current_ / 2, kMin); }

 private:
  std::chrono::microseconds current_ = kStart;
};

}  // namespace distgrad::transport
