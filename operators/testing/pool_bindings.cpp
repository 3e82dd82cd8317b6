#include "testing/unit_bindings.h"

#include "rpc/thread_pool.h"

#include <pybind11/stl.h>

#include <condition_variable>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace distgrad::testing {

namespace py = pybind11;
using rpc::ThreadPool;

namespace {

std::string threadName() {
  std::ostringstream out;
  out << std::this_thread::get_id();
  return out.str();
}

// Runs each task of the pool alone (the next one is queued once the previous
// one has returned and its thread is idle again, polled through busy()),
// without the GIL; returns the thread each ran on.
std::vector<std::string> threadsOfSequentialTasks(ThreadPool& pool, int tasks) {
  py::gil_scoped_release no_gil;
  std::vector<std::string> threads;
  std::mutex mu;
  for (int i = 0; i < tasks; ++i) {
    pool.run([&] {
      std::lock_guard<std::mutex> lock(mu);
      threads.push_back(threadName());
    });
    while (pool.busy() != 0) {
      std::this_thread::yield();
    }
  }
  return threads;
}

// Runs one task that enters a WaitScope, and returns (busy(), computing())
// read from outside while the task is inside the scope, then inside a
// nested scope, then after it left both.
std::vector<std::pair<int, int>> countsAroundWaitScope(ThreadPool& pool) {
  py::gil_scoped_release no_gil;
  std::mutex mu;
  std::condition_variable cv;
  int stage = 0;  // guarded by mu: 1, 2: the task is in 1 or 2 scopes; 3: it left them
  int seen = 0;   // guarded by mu: the stage the test has read the counts of
  auto advance = [&](int to) {
    std::unique_lock<std::mutex> lock(mu);
    stage = to;
    cv.notify_all();
    cv.wait(lock, [&] { return seen == to; });
  };
  pool.run([&] {
    ThreadPool::WaitScope outer;
    advance(1);
    {
      ThreadPool::WaitScope inner;
      advance(2);
    }
  });
  std::vector<std::pair<int, int>> counts;
  for (int s = 1; s <= 2; ++s) {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return stage == s; });
    counts.emplace_back(pool.busy(), pool.computing());
    seen = s;
    cv.notify_all();
  }
  while (pool.busy() != 0) {
    std::this_thread::yield();
  }
  counts.emplace_back(pool.busy(), pool.computing());
  return counts;
}

}  // namespace

void initPoolBindings(py::module& m) {
  py::class_<ThreadPool>(m, "ThreadPool")
      .def(py::init<int>())
      .def("busy", &ThreadPool::busy)
      .def("computing", &ThreadPool::computing)
      .def("stop", &ThreadPool::stop, py::call_guard<py::gil_scoped_release>());
  m.def("threads_of_sequential_tasks", &threadsOfSequentialTasks);
  m.def("counts_around_wait_scope", &countsAroundWaitScope);
}

}  // namespace distgrad::testing
