#pragma once

#include <torch/csrc/utils/pybind.h>

namespace distgrad::python {

// Each adds one group of private functions to distgrad._C; the public API
// wraps them in python/distgrad.
void initErrorBindings(pybind11::module& m);
void initRpcBindings(pybind11::module& m);
void initRRefBindings(pybind11::module& m);
void initAutogradBindings(pybind11::module& m);
void initInterruptBindings(pybind11::module& m);
void initOptimBindings(pybind11::module& m);

}  // namespace distgrad::python
