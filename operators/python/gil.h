#pragma once

#include <torch/csrc/utils/pybind.h>

namespace distgrad::python {

// Takes the GIL like pybind11::gil_scoped_acquire, for code that may run on
// distgrad's own threads (pool, readers). Such a thread keeps the Python
// thread state it gets the first time: creating and destroying one around
// every call costs about as much as a loopback round trip. The state is
// freed when the thread ends.
class RuntimeGil {
 public:
  RuntimeGil() = default;
  RuntimeGil(const RuntimeGil&) = delete;
  RuntimeGil& operator=(const RuntimeGil&) = delete;

 private:
  struct KeepThreadState {
    KeepThreadState();
  };

  KeepThreadState keep_;  // before gil_: the state must exist first
  pybind11::gil_scoped_acquire gil_;
};

}  // namespace distgrad::python
