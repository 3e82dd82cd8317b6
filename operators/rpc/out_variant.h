#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/core/stack.h>

#include <functional>

namespace torch::jit {
struct Operator;
}

namespace distgrad::rpc {

// Running a builtin operator so that its results land in memory the caller
// chooses: through its out= overload (aten::mul.Tensor -> aten::mul.out),
// with each result allocated beforehand. A result computed straight into
// shared memory then travels to the caller without a copy. A Scalar
// overload that PyTorch defines through its Tensor overload (mul.Scalar,
// add.Scalar and their kind: no CPU kernel of their own) runs as that
// Tensor overload on the scalar wrapped as a number tensor, as eager
// PyTorch runs torch.mul(t, 2).
//
// What to allocate is learned, not asked: the first call of a signature
// (operator, dtypes and sizes of the tensor arguments, kinds of the Scalar
// ones, other arguments' values) runs as usual and its results' dtypes and
// sizes are remembered; later calls of that signature preallocate them. A
// training loop repeats its signatures. (PyTorch's meta kernels would tell
// too, but most are Python functions in torch 2.13: each would take the
// GIL on a runtime thread and cost about 100 µs.)
//
// Threading: any thread; the caches are guarded by locks.

// Makes the storage of one result: a contiguous tensor of sizes and dtype,
// or an undefined tensor to let the operator allocate that result itself.
using ResultAllocator = std::function<at::Tensor(c10::IntArrayRef sizes, c10::ScalarType dtype)>;

// Runs op on stack (its normalized arguments), leaving its results on stack
// as running op would, with results from allocate once their signature is
// known. Returns false, with stack untouched, when op cannot run that way:
// - op mutates or aliases its inputs, returns anything but new tensors, is
//   random (nondeterministic_seeded), has results whose sizes depend on the
//   data (dynamic_output_shape, data_dependent_output), or has no out=
//   overload with its exact arguments that a CPU kernel computes (PyTorch
//   generates many out= overloads as the functional operator and a copy:
//   no gain);
// - an argument requires grad while grad mode is on (autograd records the
//   functional operator, not its out= form), or is not a dense CPU tensor,
//   a list of them or a plain value;
// - the tensor arguments hold less than kMaxReaderInputBytes (the copy
//   saved would be small).
// If the out= overload fails (a result whose sizes the data decide after
// all), op is run as usual on the same arguments, so errors are op's own,
// and that signature is no longer preallocated.
bool runIntoAllocated(const torch::jit::Operator& op, torch::jit::Stack& stack,
                      const ResultAllocator& allocate);

}  // namespace distgrad::rpc
