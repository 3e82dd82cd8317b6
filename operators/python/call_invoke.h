#pragma once

#include "rpc/request.h"

#include <torch/csrc/utils/pybind.h>

namespace distgrad::python {

// Sends request to dst through the installed agent. With no Python future
// (None), waits without the GIL (Ctrl-C ends the wait) and returns the
// result; otherwise completes py_future (a torch.futures.Future) from the
// agent's callback pool, never on a thread the runtime needs, converting the
// value with decode if it is not None. Called with the GIL.
pybind11::object invoke(int dst, rpc::Request request, double timeout,
                        const pybind11::object& py_future,
                        const pybind11::object& decode = pybind11::none());

}  // namespace distgrad::python
