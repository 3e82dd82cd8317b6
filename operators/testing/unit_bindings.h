#pragma once

#include <torch/csrc/utils/pybind.h>

namespace distgrad::testing {

// distgrad._unit: a test-only module (never imported by the package) whose
// functions drive single units of the C++ code (the transport's frames,
// connections over socketpairs, handshake and arena; autograd's context
// container and backward pass; optim's optimizers, registry and step
// message; the RPC thread pool; the rule that pulls a waker onto its
// waiter's core) without a network or other workers, for
// tests/unit. It links against distgrad._C and uses the code built there,
// so what it tests is what ships.
void initFrameBindings(pybind11::module& m);
void initHandshakeBindings(pybind11::module& m);
void initArenaBindings(pybind11::module& m);
void initAutogradBindings(pybind11::module& m);
void initOptimBindings(pybind11::module& m);
void initPoolBindings(pybind11::module& m);
void initConnectionBindings(pybind11::module& m);
void initWakerPullBindings(pybind11::module& m);

}  // namespace distgrad::testing
