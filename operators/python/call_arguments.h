#pragma once

#include <ATen/core/function_schema.h>
#include <ATen/core/stack.h>
#include <torch/csrc/utils/pybind.h>

namespace distgrad::python {

// Python arguments of an RPC as the IValues that travel. Called with the GIL.

// Binds args and kwargs to a TorchScript function's schema, converting each
// with the schema's type; defaults fill what is not given. Throws
// c10::TypeError naming the argument that does not fit.
torch::jit::Stack stackForSchema(const c10::FunctionSchema& schema, const pybind11::args& args,
                                 const pybind11::kwargs& kwargs);

// An argument of a call made by name, where no schema is known on the
// caller: tensors, numbers, strings, None, objects of TorchScript classes,
// and tuples or lists of them.
c10::IValue toUntypedIValue(const pybind11::handle& obj);

}  // namespace distgrad::python
