#pragma once

#include <sys/types.h>

#include <chrono>

namespace distgrad {

// A thread that waits for a reply pulls the reader that wakes it onto its
// own core.
//
// Why: on a VM whose idle cores halt (this project's 2-core machine), waking
// a thread on another core costs 40-50 µs, on the same core about 5
// (tools/pingpong.c: a blocking round trip takes 51-64 µs between cores,
// 11-12 µs with both processes on one core). In a job of two workers the
// scheduler sometimes settles a caller's reader on the other worker's core,
// next to that worker's reader: every reply then wakes the caller across
// cores and the two polling readers yield to each other, and a short call
// takes 4x as long for the rest of the job. Moving the reader once, where
// the thread it wakes runs, ends that: the scheduler leaves a thread where
// it runs, and the reader polls there.
//
// The move is sched_setaffinity to the waiter's core, then straight back to
// the reader's own mask: the thread keeps every core it may use (a user's
// taskset or cpuset stays in force) and only its current core changes.

// Who completed a waited-for result: a reader thread and the core it ran
// on, or nobody to pull (another kind of thread, or not recorded).
struct Waker {
  pid_t tid = 0;
  int cpu = -1;

  // The calling thread, if it is a reader thread (not a thread reading
  // while it waits, see ThreadRoleScope); otherwise nobody.
  static Waker currentReader();
};

// The rule of one waiting thread: pull after kCrossings wakeups in a row
// came from another core, and at most once per kInterval (a reader that the
// scheduler keeps moving away is not chased at every call).
class WakerPullRule {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr int kCrossings = 2;
  static constexpr std::chrono::milliseconds kInterval{10};

  // After a wakeup by waker on waiter_cpu: whether to pull it now.
  bool shouldPull(const Waker& waker, int waiter_cpu, Clock::time_point now);

 private:
  int crossings_ = 0;
  Clock::time_point last_pull_{};
  bool pulled_ = false;
};

// Moves thread tid, if it is running or runnable, onto the calling thread's
// current core, keeping its affinity mask; returns the core, or -1 if it
// could not (tid is no thread of this process, the core is not in its mask,
// or the calls failed: nothing changed then).
int pullOntoThisCore(pid_t tid);

// The calling thread's waits for replies apply the rule (thread_local
// state); called after a wait that blocked, with whoever completed it.
void afterWakeup(const Waker& waker);

}  // namespace distgrad
