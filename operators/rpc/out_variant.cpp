#include "rpc/out_variant.h"

#include "rpc/reader_work.h"

#include <ATen/ScalarOps.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/empty.h>
#include <torch/csrc/jit/runtime/operator.h>

#include <mutex>
#include <optional>
#include <sstream>
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
// never unregistered, so the caches below cannot outlive what they hold), no
// alias or mutation, tensors returned, not random (a failed out= run must
// not draw numbers twice), results whose sizes do not depend on the data.
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
    if (tag == at::Tag::nondeterministic_seeded || tag == at::Tag::dynamic_output_shape ||
        tag == at::Tag::data_dependent_output) {
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

// What sizes a call's results: the operator, and for each argument the
// dtype and sizes of its tensors, the kind of a Scalar (its value changes no
// size or dtype: type promotion only asks whether it is a bool, an integer,
// a float or a complex) and any other value itself (dims, sizes, dtypes).
// Appends to key; false for an argument the out= form does not take (see
// runIntoAllocated).
bool appendSignature(const c10::IValue& value, const c10::Argument& argument, std::string& key) {
  if (value.isTensor()) {
    const at::Tensor& t = value.toTensor();
    if (!t.defined()) {
      key += "U;";
      return true;
    }
    if (!t.device().is_cpu() || t.layout() != c10::kStrided || t.is_quantized() ||
        (t.requires_grad() && at::GradMode::is_enabled())) {
      return false;
    }
    key += c10::toString(t.scalar_type());
    for (int64_t size : t.sizes()) {
      key += ',';
      key += std::to_string(size);
    }
    key += ';';
    return true;
  }
  const auto& type = argument.type();
  const bool scalar = type->kind() == c10::TypeKind::NumberType ||
                      (type->kind() == c10::TypeKind::OptionalType &&
                       type->containedType(0)->kind() == c10::TypeKind::NumberType);
  if (scalar) {
    key += value.isNone() ? "N;" : value.isBool() ? "b;" : value.isInt() ? "i;"
         : value.isDouble() ? "d;" : "c;";
    return true;
  }
  if (value.isTensorList() || (value.isList() && mayHoldTensors(value.type()))) {
    for (const c10::IValue& element : value.toListRef()) {
      if (!element.isNone() && !element.isTensor()) {
        return false;
      }
      if (!appendSignature(element, argument, key)) {
        return false;
      }
    }
    key += '|';
    return true;
  }
  if (mayHoldTensors(value.type())) {
    return false;  // tuples, dicts, objects holding tensors
  }
  std::ostringstream repr;
  repr << value;
  key += repr.str();
  key += ';';
  return true;
}

// The results a call signature produced the first time: their dtypes and
// sizes, or nothing to preallocate (the out= run failed, or a result was
// not a tensor). Bounded: forgotten all at once when full, so that calls of
// ever new shapes cannot grow it.
struct ResultShape {
  c10::ScalarType dtype;
  std::vector<int64_t> sizes;
};

class LearnedResults {
 public:
  static constexpr size_t kMaxSignatures = 4096;

  // False if signature is unknown; else shapes is what it learned.
  bool find(const std::string& signature, std::optional<std::vector<ResultShape>>& shapes) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = learned_.find(signature);
    if (it == learned_.end()) {
      return false;
    }
    shapes = it->second;
    return true;
  }
  void learn(const std::string& signature, std::optional<std::vector<ResultShape>> shapes) {
    std::lock_guard<std::mutex> lock(mu_);
    if (learned_.size() >= kMaxSignatures) {
      learned_.clear();
    }
    learned_[signature] = std::move(shapes);
  }

 private:
  std::mutex mu_;  // guards learned_
  std::unordered_map<std::string, std::optional<std::vector<ResultShape>>> learned_;
};

LearnedResults& learnedResults() {
  static LearnedResults learned;
  return learned;
}

// The shapes of the results op left on stack, or nothing if one is not a
// defined tensor.
std::optional<std::vector<ResultShape>> resultShapes(const torch::jit::Operator& op,
                                                     const torch::jit::Stack& stack) {
  const size_t num_results = op.schema().returns().size();
  if (stack.size() < num_results) {
    return std::nullopt;
  }
  std::vector<ResultShape> shapes;
  for (size_t i = stack.size() - num_results; i < stack.size(); ++i) {
    if (!stack[i].isTensor() || !stack[i].toTensor().defined()) {
      return std::nullopt;
    }
    const at::Tensor& t = stack[i].toTensor();
    shapes.push_back({t.scalar_type(), t.sizes().vec()});
  }
  return shapes;
}

}  // namespace

bool runIntoAllocated(const torch::jit::Operator& op, torch::jit::Stack& stack,
                      const ResultAllocator& allocate) {
  // Most builtin calls are small and served on a reader: they leave before
  // any lookup. Only dense tensors run into allocated results (a sparse
  // tensor has no nbytes either).
  size_t input_bytes = 0;
  auto add = [&](const at::Tensor& t) {
    if (t.defined() && t.layout() != c10::kStrided) {
      return false;
    }
    input_bytes += t.defined() ? t.nbytes() : 0;
    return true;
  };
  for (const auto& value : stack) {
    if (value.isTensor() && !add(value.toTensor())) {
      return false;
    }
    if (value.isTensorList()) {
      for (const at::Tensor& t : value.toTensorList()) {
        if (!add(t)) {
          return false;
        }
      }
    }
  }
  if (input_bytes < kMaxReaderInputBytes) {
    return false;
  }
  const OutPlan& plan = cachedPlanFor(op);
  const auto& arguments = op.schema().arguments();
  if (!plan.out || stack.size() != arguments.size()) {
    return false;
  }
  std::string signature = c10::toString(op.schema().operator_name());
  signature += '(';
  for (size_t i = 0; i < stack.size(); ++i) {
    if (!appendSignature(stack[i], arguments[i], signature)) {
      return false;
    }
  }
  std::optional<std::vector<ResultShape>> shapes;
  if (!learnedResults().find(signature, shapes)) {
    // First of its kind: runs as usual, and tells the next ones what to
    // allocate.
    op.getOperation()(stack);
    learnedResults().learn(signature, resultShapes(op, stack));
    return true;
  }
  if (!shapes) {
    op.getOperation()(stack);
    return true;
  }
  std::vector<at::Tensor> results;
  results.reserve(shapes->size());
  for (const auto& shape : *shapes) {
    at::Tensor result = allocate(shape.sizes, shape.dtype);
    if (!result.defined()) {
      result = at::empty(shape.sizes, at::TensorOptions().dtype(shape.dtype));
    }
    results.push_back(std::move(result));
  }
  torch::jit::Stack original = stack;  // for op itself, should the out= run fail
  for (size_t position : plan.wrapped) {
    stack[position] = at::native::wrapped_scalar_tensor(stack[position].toScalar());
  }
  for (auto& result : results) {
    stack.emplace_back(std::move(result));
  }
  try {
    plan.out->getOperation()(stack);
  } catch (const std::exception&) {
    learnedResults().learn(signature, std::nullopt);
    stack = std::move(original);
    op.getOperation()(stack);
  }
  return true;
}

}  // namespace distgrad::rpc
