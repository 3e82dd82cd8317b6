#include "common/waker_pull.h"

#include "common/thread_role.h"

#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace distgrad {

Waker Waker::currentReader() {
  // A thread that reads only while it waits for its own reply is not one
  // to move: it goes back to its own work.
  if (currentThreadRole() != ThreadRole::kReader || threadRoleIsBorrowed()) {
    return {};
  }
  // Asked at every reply a pulling wait gets: the id once per thread.
  thread_local const pid_t tid = static_cast<pid_t>(::syscall(SYS_gettid));
  return {tid, ::sched_getcpu()};
}

bool WakerPullRule::shouldPull(const Waker& waker, int waiter_cpu, Clock::time_point now) {
  if (waker.tid == 0 || waker.cpu < 0 || waiter_cpu < 0 || waker.cpu == waiter_cpu) {
    crossings_ = 0;
    return false;
  }
  if (++crossings_ < kCrossings || (pulled_ && now - last_pull_ < kInterval)) {
    return false;
  }
  crossings_ = 0;
  pulled_ = true;
  last_pull_ = now;
  return true;
}

int pullOntoThisCore(pid_t tid) {
  // Only a thread of this process: a reader that has ended since it woke
  // us leaves its id free for any thread of the machine.
  if (::syscall(SYS_tgkill, ::getpid(), tid, 0) != 0) {
    return -1;
  }
  int here = ::sched_getcpu();
  cpu_set_t mask;
  if (here < 0 || ::sched_getaffinity(tid, sizeof(mask), &mask) != 0 || !CPU_ISSET(here, &mask)) {
    return -1;
  }
  cpu_set_t only_here;
  CPU_ZERO(&only_here);
  CPU_SET(here, &only_here);
  if (::sched_setaffinity(tid, sizeof(only_here), &only_here) != 0) {
    return -1;
  }
  // A running or runnable thread has moved now (a sleeping one has not:
  // its mask is back before it wakes); with its mask back it stays until
  // the scheduler moves it. The reader that just completed a reply is
  // running: it polls for the next frame.
  ::sched_setaffinity(tid, sizeof(mask), &mask);
  return here;
}

void afterWakeup(const Waker& waker) {
  thread_local WakerPullRule rule;
  if (rule.shouldPull(waker, ::sched_getcpu(), WakerPullRule::Clock::now())) {
    pullOntoThisCore(waker.tid);
  }
}

}  // namespace distgrad
