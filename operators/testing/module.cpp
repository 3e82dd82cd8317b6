#include "testing/unit_bindings.h"

#include <c10/util/Exception.h>

#include <stdexcept>

namespace py = pybind11;

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  // checkOutgoing throws std::length_error for a message over the limits and
  // c10::ValueError for a tensor that cannot travel: tests tell them apart.
  py::register_local_exception<std::length_error>(m, "LengthError", PyExc_ValueError);
  py::register_local_exception_translator([](std::exception_ptr p) {
    try {
      if (p) {
        std::rethrow_exception(p);
      }
    } catch (const c10::ValueError& e) {
      PyErr_SetString(PyExc_ValueError, e.what_without_backtrace());
    } catch (const c10::Error& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what_without_backtrace());
    }
    // distgrad's own errors (DistError, RemoteError) are raised as their
    // Python classes by the translator distgrad._C registers.
  });
  distgrad::testing::initFrameBindings(m);
  distgrad::testing::initHandshakeBindings(m);
  distgrad::testing::initArenaBindings(m);
  distgrad::testing::initAutogradBindings(m);
  distgrad::testing::initOptimBindings(m);
  distgrad::testing::initPoolBindings(m);
  distgrad::testing::initConnectionBindings(m);
  distgrad::testing::initWakerPullBindings(m);
}
