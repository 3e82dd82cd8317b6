#include "python/bindings.h"

// Importing distgrad._C also runs the static TORCH_LIBRARY registrations of
// the dist_autograd and dist_rpc operators (operators/ops).
PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  distgrad::python::initErrorBindings(m);
  distgrad::python::initRpcBindings(m);
  distgrad::python::initRRefBindings(m);
  distgrad::python::initAutogradBindings(m);
  distgrad::python::initInterruptBindings(m);
  distgrad::python::initOptimBindings(m);
}
