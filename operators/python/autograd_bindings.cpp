#include "autograd/current_context.h"
#include "autograd/dist_autograd.h"
#include "autograd/dist_engine.h"
#include "python/bindings.h"

#include <torch/csrc/jit/python/pybind_utils.h>

namespace distgrad::python {

namespace py = pybind11;

void initAutogradBindings(py::module& m) {
  m.def("_enter_context", &autograd::enterContext);
  m.def("_exit_context", &autograd::exitContext, py::call_guard<py::gil_scoped_release>());
  m.def("_current_context_id", &autograd::currentContextId);
  m.def("_backward", &autograd::DistEngine::backward,
        py::call_guard<py::gil_scoped_release>());
  m.def("_get_gradients", [](int64_t context_id) {
    return torch::jit::toPyObject(c10::IValue(autograd::getGradients(context_id)));
  });
  m.def("_debug_info", &autograd::debugInfo);
}

}  // namespace distgrad::python
