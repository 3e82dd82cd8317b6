#include "rpc/out_variant.h"

#include "rpc/reader_work.h"

#include <ATen/ScalarOps.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_strided.h>
#include <torch/csrc/jit/runtime/operator.h>

#include <mutex>
#include <unordered_map>

namespace distgrad::rpc {

namespace {

using OperatorPtr = std::shared_ptr<torch::jit::Operator>;

bool isTensorType(const c10::TypePtr& type) {
  return type->kind() == c10::TypeKind::TensorType;
}

// Whether a value of this type may hold tensors (Any may hold anything).
bool mayHoldTensors(const c10::TypePtr& type) {
  if (isTensorType(type) || type->kind() == c10::TypeKind::AnyType) {
    return true;
  }
  for (const auto& contained : type->containedTypes()) {
    if (mayHoldTensors(contained)) {
      return true;
    }
  }
  return false;
}

// Whether out is op's out= overload: op's arguments, then one keyword-only
// Tensor(a!) per result of op.
bool isOutVariantOf(const c10::FunctionSchema& out, const c10::FunctionSchema& op) {
  const auto& args = op.arguments();
  const auto& out_args = out.arguments();
  const size_t num_results = op.returns().size();
  if (out.name() != op.name() || out.returns().size() != num_results ||
      out_args.size() != args.size() + num_results) {
    return false;
  }
  for (size_t i = 0; i < args.size(); ++i) {
    if (out_args[i].name() != args[i].name() || *out_args[i].type() != *args[i].type() ||
        out_args[i].alias_info() != nullptr) {
      return false;
    }
  }
  for (size_t i = args.size(); i < out_args.size(); ++i) {
    const auto* alias = out_args[i].alias_info();
    if (!out_args[i].kwarg_only() || !isTensorType(out_args[i].type()) || alias == nullptr ||
        !alias->isWrite()) {
      return false;
    }
  }
  return true;
}

bool hasKernelFor(const c10::FunctionSchema& schema, c10::DispatchKey key) {
  auto handle = c10::Dispatcher::singleton().findOp(schema.operator_name());
  return handle && handle->hasKernelForDispatchKey(key);
}

// An operator whose results can be preallocated: aten's (their overloads are
// never unregistered, so the cache below cannot outlive what it holds), no
// alias or mutation, tensors returned, not random (a failed out= run must
// not draw numbers twice).
bool isPlainFunctional(const torch::jit::Operator& op) {
  const auto& schema = op.schema();
  if (!op.isC10Op() || schema.name().rfind("aten::", 0) != 0 || schema.hasAnyAliasInfo() ||
      schema.returns().empty()) {
    return false;
  }
  for (const auto& result : schema.returns()) {
    if (!isTensorType(result.type())) {
      return false;
    }
  }
  for (const auto& tag : op.getTags()) {
    if (tag == at::Tag::nondeterministic_seeded) {
      return false;
    }
  }
  return true;
}

const std::vector<OperatorPtr>& overloadsOf(const c10::FunctionSchema& schema) {
  return torch::jit::getAllOperatorsFor(c10::Symbol::fromQualString(schema.name()));
}

// op's out= overload, if a CPU kernel computes it: an out= overload made of
// the functional operator and a copy (as PyTorch generates for many Scalar
// overloads) would cost the copy it is meant to save.
OperatorPtr cpuOutVariantOf(const torch::jit::Operator& op) {
  for (const auto& candidate : overloadsOf(op.schema())) {
    if (candidate->isC10Op() && isOutVariantOf(candidate->schema(), op.schema())) {
      return hasKernelFor(candidate->schema(), c10::DispatchKey::CPU) ? candidate : nullptr;
    }
  }
  return nullptr;
}

// The overload of op that takes a tensor wherever op takes a Scalar, all
// else equal (mul.Tensor for mul.Scalar); positions gets those arguments.
OperatorPtr tensorOverloadOf(const torch::jit::Operator& op, std::vector<size_t>& positions) {
  const auto& args = op.schema().arguments();
  for (const auto& candidate : overloadsOf(op.schema())) {
    const auto& cargs = candidate->schema().arguments();
    if (candidate.get() == &op || !candidate->isC10Op() || cargs.size() != args.size() ||
        candidate->schema().returns().size() != op.schema().returns().size()) {
      continue;
    }
    std::vector<size_t> scalars;
    bool matches = true;
    for (size_t i = 0; i < args.size() && matches; ++i) {
      if (cargs[i].name() != args[i].name()) {
        matches = false;
      } else if (args[i].type()->kind() == c10::TypeKind::NumberType &&
                 isTensorType(cargs[i].type())) {
        scalars.push_back(i);
      } else {
        matches = *cargs[i].type() == *args[i].type();
      }
    }
    if (matches && !scalars.empty() && isPlainFunctional(*candidate)) {
      positions = std::move(scalars);
      return candidate;
    }
  }
  return nullptr;
}

// How op runs into preallocated results: through out, an out= overload,
// after the Scalar arguments at positions wrapped become wrapped-number
// tensors (out then belongs to op's Tensor overload). Null out: op cannot.
struct OutPlan {
  OperatorPtr out;
  std::vector<size_t> wrapped;
};

OutPlan planFor(const torch::jit::Operator& op) {
  OutPlan plan;
  if (!isPlainFunctional(op)) {
    return plan;
  }
  if (OperatorPtr out = cpuOutVariantOf(op)) {
    plan.out = std::move(out);
    return plan;
  }
  // PyTorch defines Scalar overloads without a kernel of their own (mul.Scalar
  // and its kind, CompositeExplicitAutograd) as their Tensor overload on the
  // scalar wrapped as a number tensor, which is also what eager Python runs
  // for torch.mul(t, 2).
  if (hasKernelFor(op.schema(), c10::DispatchKey::CPU) ||
      !hasKernelFor(op.schema(), c10::DispatchKey::CompositeExplicitAutograd)) {
    return plan;
  }
  std::vector<size_t> wrapped;
  OperatorPtr tensor_overload = tensorOverloadOf(op, wrapped);
  if (!tensor_overload) {
    return plan;
  }
  if (OperatorPtr out = cpuOutVariantOf(*tensor_overload)) {
    plan.out = std::move(out);
    plan.wrapped = std::move(wrapped);
  }
  return plan;
}

const OutPlan& cachedPlanFor(const torch::jit::Operator& op) {
  static std::mutex mu;  // guards plans
  static std::unordered_map<c10::OperatorName, OutPlan> plans;
  const c10::OperatorName& name = op.schema().operator_name();
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = plans.find(name);
    if (it != plans.end()) {
      return it->second;
    }
  }
  OutPlan plan = planFor(op);
  std::lock_guard<std::mutex> lock(mu);
  return plans.emplace(name, std::move(plan)).first->second;
}

// The argument as the meta kernel takes it: dense CPU tensors become meta
// tensors of the same sizes, strides and dtype (their bytes are added to
// tensor_bytes), lists of them lists of those, other values stay. False for
// what the out= form does not run (see runIntoAllocated).
bool toMeta(const c10::IValue& value, c10::IValue& meta, size_t& tensor_bytes) {
  if (value.isTensor()) {
    const at::Tensor& t = value.toTensor();
    if (!t.defined()) {
      meta = value;
      return true;
    }
    if (!t.device().is_cpu() || t.layout() != c10::kStrided || t.is_quantized() ||
        (t.requires_grad() && at::GradMode::is_enabled())) {
      return false;
    }
    tensor_bytes += t.nbytes();
    meta = at::empty_strided(t.sizes(), t.strides(), t.options().device(c10::kMeta));
    return true;
  }
  if (!mayHoldTensors(value.type())) {
    meta = value;
    return true;
  }
  if (!value.isList()) {
    return false;  // tuples, dicts, objects holding tensors
  }
  c10::List<c10::IValue> list = value.toList();
  c10::impl::GenericList converted(list.elementType());
  converted.reserve(list.size());
  for (const c10::IValue& element : list) {
    c10::IValue m;
    if (!toMeta(element, m, tensor_bytes)) {
      return false;
    }
    converted.push_back(std::move(m));
  }
  meta = std::move(converted);
  return true;
}

}  // namespace

bool runIntoAllocated(const torch::jit::Operator& op, torch::jit::Stack& stack,
                      const ResultAllocator& allocate) {
  const OutPlan& plan = cachedPlanFor(op);
  if (!plan.out) {
    return false;
  }
  torch::jit::Stack meta_stack;
  meta_stack.reserve(stack.size());
  size_t tensor_bytes = 0;
  for (const auto& value : stack) {
    c10::IValue meta;
    if (!toMeta(value, meta, tensor_bytes)) {
      return false;
    }
    meta_stack.push_back(std::move(meta));
  }
  if (tensor_bytes < kMaxReaderInputBytes) {
    return false;
  }
  try {
    op.getOperation()(meta_stack);
  } catch (const std::exception&) {
    return false;  // no meta kernel, or one that depends on the data
  }
  const size_t num_results = op.schema().returns().size();
  if (meta_stack.size() < num_results) {
    return false;
  }
  std::vector<at::Tensor> results;
  results.reserve(num_results);
  bool allocated_any = false;
  for (size_t i = meta_stack.size() - num_results; i < meta_stack.size(); ++i) {
    if (!meta_stack[i].isTensor() || !meta_stack[i].toTensor().defined()) {
      return false;
    }
    const at::Tensor& meta = meta_stack[i].toTensor();
    at::Tensor result = allocate(meta.sizes(), meta.scalar_type());
    if (result.defined()) {
      allocated_any = true;
    } else {
      result = at::empty(meta.sizes(), at::TensorOptions().dtype(meta.scalar_type()));
    }
    results.push_back(std::move(result));
  }
  if (!allocated_any) {
    return false;
  }
  torch::jit::Stack arguments = stack;  // for op itself, should the out= run fail
  for (size_t position : plan.wrapped) {
    stack[position] = at::native::wrapped_scalar_tensor(stack[position].toScalar());
  }
  for (auto& result : results) {
    stack.emplace_back(std::move(result));
  }
  try {
    plan.out->getOperation()(stack);
  } catch (const std::exception&) {
    stack = std::move(arguments);
    op.getOperation()(stack);
  }
  return true;
}

}  // namespace distgrad::rpc
