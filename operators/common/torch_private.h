#pragma once

// Every private torch C++ API the runtime uses, and only here: checked
// against torch 2.13.0, so that a torch upgrade is a change in one place
// (the Python side's are in python/distgrad/_torch_private.py; the pybind
// glue in operators/python uses torch's extension helpers such as
// torch::jit::toPyObject and get_python_cu, as every extension does).

#include <torch/headeronly/version.h>

static_assert(TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR == 13,
              "distgrad's uses of torch internals were checked against torch 2.13: check "
              "operators/common/torch_private.h against this torch first");

#include <c10/core/TensorImpl.h>
#include <c10/util/ThreadLocalDebugInfo.h>
#include <torch/csrc/autograd/engine.h>
#include <torch/csrc/autograd/functions/accumulate_grad.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/csrc/autograd/input_buffer.h>
#include <torch/csrc/autograd/variable.h>

#include <memory>

namespace distgrad::torch_private {

// The local engine's graph-task internals the distributed backward pass
// mirrors (operators/autograd/backward_pass.cpp): input buffers that sum a
// node's incoming gradients, the check of a node's outputs against its next
// edges, and the leaf node whose variable receives a gradient.
using torch::autograd::AccumulateGrad;
using torch::autograd::InputBuffer;
using torch::autograd::validate_outputs;

// Where a tensor's gradient goes (its grad_fn's input, or its
// AccumulateGrad), and making a node the grad_fn of received tensors.
using torch::autograd::set_history;
using torch::autograd::impl::gradient_edge;

// A slot of c10's thread-local debug info, which at::ThreadLocalState
// carries across TorchScript forks and continuations: distgrad keeps the
// current autograd context there.
inline void pushDebugInfo(c10::DebugInfoKind kind, std::shared_ptr<c10::DebugInfoBase> info) {
  c10::ThreadLocalDebugInfo::_push(kind, std::move(info));
}

inline void popDebugInfo(c10::DebugInfoKind kind) {
  c10::ThreadLocalDebugInfo::_pop(kind);
}

// Whether a Python object is tied to the tensor or its storage (destroying
// the last C++ reference then releases it, which needs the GIL).
inline bool hasPythonObject(const at::Tensor& tensor) {
  return tensor.unsafeGetTensorImpl()->pyobj_slot()->load_pyobj() != nullptr ||
         (tensor.has_storage() &&
          tensor.storage().unsafeGetStorageImpl()->pyobj_slot()->load_pyobj() != nullptr);
}

}  // namespace distgrad::torch_private
