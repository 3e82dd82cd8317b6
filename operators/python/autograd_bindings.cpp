#include "python/bindings.h"

namespace distgrad::python {

void initAutogradBindings(pybind11::module& m) {}

}  // namespace distgrad::python
