#pragma once

#include "rpc/agent.h"

#include <torch/csrc/utils/pybind.h>

#include <memory>

namespace distgrad::python {

// How Python calls and Python objects cross the agent. Python objects travel
// pickled by distgrad._python_call as (payload, tensors, rrefs): the pickle
// in a uint8 tensor, and the tensors and RRef handles it refers to, which
// travel out of band.

// Runs pickled Python calls (see Agent::PythonCallRunner); work that waits
// for an async_execution function's future resumes on agent's pool.
rpc::Agent::PythonCallRunner pythonCallRunner(std::weak_ptr<rpc::Agent> agent);

// Serializes and deserializes Python objects kept as RRef values.
rpc::Agent::PythonValueCodec pythonValueCodec();

// obj as an RRef value: a tensor as itself, anything else as a Python
// object. Called with the GIL.
c10::IValue pythonValue(const pybind11::handle& obj);

// (payload, tensors, rrefs) from Python as the IValue that travels, and the
// RRef handle of a distgrad.rpc.RRef. Called with the GIL.
c10::IValue serializedValue(const pybind11::handle& payload, const pybind11::handle& tensors,
                            const pybind11::handle& rrefs);
rpc::RRefPtr rrefHandle(const pybind11::handle& handle);

// The c10 future inside a torch.futures.Future created in Python.
rpc::FuturePtr futureOf(const pybind11::handle& py_future);

}  // namespace distgrad::python
