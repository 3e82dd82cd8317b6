#include "testing/unit_bindings.h"

#include "common/waker_pull.h"

#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <thread>
#include <tuple>

namespace distgrad::testing {

namespace py = pybind11;

namespace {

// Restores the calling thread's affinity mask when it goes.
class PinnedHere {
 public:
  PinnedHere() : here_(::sched_getcpu()) {
    if (here_ < 0 || ::sched_getaffinity(0, sizeof(saved_), &saved_) != 0) {
      throw std::runtime_error("cannot read this thread's core and mask");
    }
    cpu_set_t only;
    CPU_ZERO(&only);
    CPU_SET(here_, &only);
    ::sched_setaffinity(0, sizeof(only), &only);
  }
  ~PinnedHere() { ::sched_setaffinity(0, sizeof(saved_), &saved_); }
  PinnedHere(const PinnedHere&) = delete;
  PinnedHere& operator=(const PinnedHere&) = delete;

  int here() const { return here_; }
  const cpu_set_t& mask() const { return saved_; }

 private:
  const int here_;
  cpu_set_t saved_;
};

// A thread spinning on another core of the caller's mask is pulled with
// pullOntoThisCore. Returns (the caller's core, what pullOntoThisCore
// returned, whether the thread then ran on the caller's core within a
// second, whether its mask is the one it had), or None if the caller may
// use one core only.
py::object pullSpinningThread() {
  py::gil_scoped_release no_gil;
  PinnedHere pinned;
  std::optional<int> other;
  for (int cpu = 0; cpu < CPU_SETSIZE && !other; ++cpu) {
    if (CPU_ISSET(cpu, &pinned.mask()) && cpu != pinned.here()) {
      other = cpu;
    }
  }
  if (!other) {
    py::gil_scoped_acquire gil;
    return py::none();
  }
  std::atomic<pid_t> tid{0};
  std::atomic<int> target{-1};
  std::atomic<bool> started{false}, seen_on_target{false}, stop{false};
  std::thread spinner([&] {
    cpu_set_t start;
    CPU_ZERO(&start);
    CPU_SET(*other, &start);
    ::sched_setaffinity(0, sizeof(start), &start);
    tid = static_cast<pid_t>(::syscall(SYS_gettid));
    while (!stop) {
      int cpu = ::sched_getcpu();
      started = started || cpu == *other;
      if (cpu == target) {
        seen_on_target = true;
      }
    }
  });
  using Clock = std::chrono::steady_clock;
  auto wait_for = [](const std::atomic<bool>& flag) {
    auto until = Clock::now() + std::chrono::seconds(1);
    while (!flag && Clock::now() < until) {
      // Sleeping, not spinning: this thread must leave its core to the
      // spinner once it is pulled there.
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    return flag.load();
  };
  bool ok = wait_for(started);
  // The spinner may use every core the caller may, as a reader may.
  ::sched_setaffinity(tid, sizeof(pinned.mask()), &pinned.mask());
  target = pinned.here();
  int pulled_to = ok ? pullOntoThisCore(tid) : -1;
  bool seen = ok && wait_for(seen_on_target);
  cpu_set_t after;
  bool same_mask = ::sched_getaffinity(tid, sizeof(after), &after) == 0 &&
                   CPU_EQUAL(&after, &pinned.mask());
  stop = true;
  spinner.join();
  py::gil_scoped_acquire gil;
  return py::make_tuple(pinned.here(), pulled_to, seen, same_mask);
}

}  // namespace

void initWakerPullBindings(py::module& m) {
  py::class_<WakerPullRule>(m, "WakerPullRule")
      .def(py::init<>())
      .def("should_pull", [](WakerPullRule& rule, int waker_tid, int waker_cpu, int waiter_cpu,
                             double now_ms) {
        auto now = WakerPullRule::Clock::time_point(
            std::chrono::duration_cast<WakerPullRule::Clock::duration>(
                std::chrono::duration<double, std::milli>(now_ms)));
        return rule.shouldPull(Waker{waker_tid, waker_cpu}, waiter_cpu, now);
      });
  m.def("pull_spinning_thread", &pullSpinningThread);
  m.def("pull_onto_this_core", [](pid_t tid) { return pullOntoThisCore(tid); });
}

}  // namespace distgrad::testing
