#pragma once

#include "rpc/agent.h"

#include <torch/csrc/utils/pybind.h>

#include <functional>

namespace distgrad::python {

// Waits that Ctrl-C can end. Python runs signal handlers only on the main
// thread, between bytecodes: a thread blocked in C++ never gets there, so
// these waits take the GIL back every 50 ms to run pending handlers
// (PyErr_CheckSignals). A handler that raises (KeyboardInterrupt) ends the
// wait with pybind11::error_already_set; what was waited for goes on.

// Whether a wait for a single reply moves the reader that completes it onto
// the waiting thread's core (see common/waker_pull.h): for the synchronous
// calls (rpc_sync, to_here), not for waits on one of several futures,
// whose replies come through several readers that one core cannot hold.
enum class PullWaker { kNo, kYes };

// Returns once future has completed. Called without the GIL.
void waitInterruptibly(const rpc::FuturePtr& future, PullWaker pull = PullWaker::kNo);

// Calls step(seconds) repeatedly, each time for at most 50 ms, until it
// returns true (returns true) or timeout_seconds have passed (returns false;
// 0 means no limit). Called without the GIL.
bool waitInterruptibly(const std::function<bool(double seconds)>& step, double timeout_seconds);

// Torch's C++ log lines (c10 LOG, such as the store client's warnings with
// their C++ stack traces) are dropped while at least one QuietTorchLogs
// exists: for store operations whose failures distgrad reports itself. The
// level is process-wide, so keep them short.
class QuietTorchLogs {
 public:
  QuietTorchLogs();
  ~QuietTorchLogs();
  QuietTorchLogs(const QuietTorchLogs&) = delete;
  QuietTorchLogs& operator=(const QuietTorchLogs&) = delete;
};

}  // namespace distgrad::python
