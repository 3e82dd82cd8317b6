#include "rpc/builtin_operator.h"

#include <c10/util/Exception.h>
#include <torch/csrc/jit/runtime/operator.h>

#include <mutex>
#include <unordered_map>

namespace distgrad::rpc {

namespace {

using OperatorPtr = std::shared_ptr<torch::jit::Operator>;

bool normalizeFor(const OperatorPtr& op, std::vector<c10::IValue>& args, const Kwargs& kwargs) {
  std::vector<c10::IValue> candidate = args;
  try {
    op->schema().checkAndNormalizeInputs(candidate, kwargs);
  } catch (const c10::Error&) {
    return false;
  }
  args = std::move(candidate);
  return true;
}

// Overload chosen per operator name and argument types, so that matching by
// trial runs once per call signature.
class OverloadCache {
 public:
  OperatorPtr find(const std::string& key) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = chosen_.find(key);
    return it == chosen_.end() ? nullptr : it->second;
  }
  void remember(const std::string& key, OperatorPtr op) {
    std::lock_guard<std::mutex> lock(mu_);
    chosen_.emplace(key, std::move(op));
  }

 private:
  std::mutex mu_;  // guards chosen_
  std::unordered_map<std::string, OperatorPtr> chosen_;
};

OverloadCache& overloadCache() {
  static OverloadCache cache;
  return cache;
}

std::string signatureKey(const std::string& name, const std::vector<c10::IValue>& args,
                         const Kwargs& kwargs) {
  std::string key = name + "(";
  for (const auto& a : args) {
    key += a.type()->repr_str() + ",";
  }
  for (const auto& [k, v] : kwargs) {
    key += k + "=" + v.type()->repr_str() + ",";
  }
  return key + ")";
}

OperatorPtr resolve(const std::string& target, std::vector<c10::IValue>& args,
                    const Kwargs& kwargs) {
  auto sep = target.find("::");
  TORCH_CHECK_VALUE(sep != std::string::npos && sep > 0 && sep + 2 < target.size(),
                    "'", target, "' is not a builtin operator name (expected 'ns::name')");
  auto dot = target.find('.', sep + 2);
  if (dot != std::string::npos) {
    c10::OperatorName name(target.substr(0, dot), target.substr(dot + 1));
    OperatorPtr op = torch::jit::findOperatorFor(name);
    TORCH_CHECK_VALUE(op != nullptr, "unknown builtin operator '", target, "'");
    op->schema().checkAndNormalizeInputs(args, kwargs);
    return op;
  }
  std::string key = signatureKey(target, args, kwargs);
  if (OperatorPtr op = overloadCache().find(key)) {
    op->schema().checkAndNormalizeInputs(args, kwargs);
    return op;
  }
  const auto& candidates = torch::jit::getAllOperatorsFor(c10::Symbol::fromQualString(target));
  TORCH_CHECK_VALUE(!candidates.empty(), "unknown builtin operator '", target, "'");
  for (const auto& op : candidates) {
    if (normalizeFor(op, args, kwargs)) {
      overloadCache().remember(key, op);
      return op;
    }
  }
  TORCH_CHECK_TYPE(false, "no overload of '", target, "' accepts the arguments ", key);
}

}  // namespace

c10::IValue runBuiltinOperator(const std::string& target, std::vector<c10::IValue> args,
                               const Kwargs& kwargs, const ResultAllocator& results) {
  OperatorPtr op = resolve(target, args, kwargs);
  torch::jit::Stack stack = std::move(args);
  if (!results || !runIntoAllocated(*op, stack, results)) {
    op->getOperation()(stack);
  }
  size_t num_returns = op->schema().returns().size();
  if (num_returns == 1) {
    return std::move(stack.back());
  }
  std::vector<c10::IValue> outputs(std::make_move_iterator(stack.end() - num_returns),
                                   std::make_move_iterator(stack.end()));
  return c10::ivalue::Tuple::create(std::move(outputs));
}

}  // namespace distgrad::rpc
