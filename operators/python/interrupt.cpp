#include "python/interrupt.h"
#include "common/waker_pull.h"
#include "python/bindings.h"
#include "python/call_completion.h"
#include "python/python_values.h"
#include "rpc/thread_pool.h"

#include <c10/util/Logging.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>

namespace distgrad::python {

namespace py = pybind11;

namespace {

constexpr std::chrono::milliseconds kSignalCheckInterval{50};

// Raises (as error_already_set) what a signal handler raised.
void checkSignals() {
  py::gil_scoped_acquire gil;
  if (PyErr_CheckSignals() != 0) {
    throw py::error_already_set();
  }
}

struct Completion {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;  // guarded by mu
  Waker waker;        // guarded by mu: who completed the future
};

// _quiet_torch_logs in Python.
struct QuietScope {
  std::optional<QuietTorchLogs> quiet;
};

std::mutex quiet_mu;
int quiet_count = 0;      // guarded by quiet_mu
int saved_log_level = 0;  // guarded by quiet_mu

}  // namespace

void waitInterruptibly(const rpc::FuturePtr& future, PullWaker pull) {
  if (future->completed()) {
    return;
  }
  auto completion = std::make_shared<Completion>();
  future->addCallback([completion, pull](c10::ivalue::Future&) {
    {
      std::lock_guard<std::mutex> lock(completion->mu);
      completion->done = true;
      if (pull == PullWaker::kYes) {
        completion->waker = Waker::currentReader();
      }
    }
    completion->cv.notify_all();
  });
  rpc::ThreadPool::WaitScope waiting;
  std::unique_lock<std::mutex> lock(completion->mu);
  while (!completion->cv.wait_for(lock, kSignalCheckInterval, [&] { return completion->done; })) {
    lock.unlock();
    checkSignals();
    lock.lock();
  }
  if (pull == PullWaker::kYes) {
    afterWakeup(completion->waker);
  }
}

bool waitInterruptibly(const std::function<bool(double)>& step, double timeout_seconds) {
  using Clock = std::chrono::steady_clock;
  const bool forever = timeout_seconds <= 0;
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(forever ? 0 : timeout_seconds));
  const double interval = std::chrono::duration<double>(kSignalCheckInterval).count();
  while (true) {
    double seconds = interval;
    if (!forever) {
      seconds = std::min(seconds, std::chrono::duration<double>(deadline - Clock::now()).count());
      if (seconds <= 0) {
        return step(0.000001);
      }
    }
    if (step(seconds)) {
      return true;
    }
    checkSignals();
  }
}

QuietTorchLogs::QuietTorchLogs() {
  std::lock_guard<std::mutex> lock(quiet_mu);
  if (quiet_count++ == 0) {
    saved_log_level = FLAGS_caffe2_log_level;
    FLAGS_caffe2_log_level = c10::GLOG_FATAL;
  }
}

QuietTorchLogs::~QuietTorchLogs() {
  std::lock_guard<std::mutex> lock(quiet_mu);
  if (--quiet_count == 0) {
    FLAGS_caffe2_log_level = saved_log_level;
  }
}

void initInterruptBindings(py::module& m) {
  m.def(
      "_wait_future",
      [](const py::handle& py_future) {
        auto future = futureOf(py_future);
        auto call = CallCompletion::of(py_future);
        py::gil_scoped_release no_gil;
        if (call) {
          call->completeHere();
        }
        waitInterruptibly(future);
      },
      "Returns once the torch.futures.Future has completed; Ctrl-C interrupts the wait. The "
      "future of an rpc_async call is completed here if its reply comes while this thread "
      "reads the call's connection.");
  // A context manager: `with _C._quiet_torch_logs():`.
  py::class_<QuietScope>(m, "_quiet_torch_logs")
      .def(py::init<>())
      .def("__enter__", [](QuietScope& self) { self.quiet.emplace(); })
      .def("__exit__", [](QuietScope& self, const py::args&) {
        self.quiet.reset();
        return false;
      });
}

}  // namespace distgrad::python
