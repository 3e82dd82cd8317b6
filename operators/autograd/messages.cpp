#include "autograd/messages.h"

#include <stdexcept>

namespace distgrad::autograd {

std::vector<c10::IValue> PropagateGradients::toArgs() const {
  std::vector<c10::IValue> tensors(grads.begin(), grads.end());
  return {context_id, pass_id, message_id, retain_graph, timeout_seconds,
          c10::ivalue::Tuple::create(std::move(tensors))};
}

PropagateGradients PropagateGradients::fromArgs(const std::vector<c10::IValue>& args) {
  if (args.size() != 6 || !args[0].isInt() || !args[1].isInt() || !args[2].isInt() ||
      !args[3].isBool() || !args[4].isDouble() || !args[5].isTuple()) {
    throw std::runtime_error("malformed gradient message");
  }
  PropagateGradients m;
  m.context_id = args[0].toInt();
  m.pass_id = args[1].toInt();
  m.message_id = args[2].toInt();
  m.retain_graph = args[3].toBool();
  m.timeout_seconds = args[4].toDouble();
  for (const auto& grad : args[5].toTupleRef().elements()) {
    if (!grad.isTensor()) {
      throw std::runtime_error("malformed gradient message");
    }
    m.grads.push_back(grad.toTensor());
  }
  return m;
}

std::vector<c10::IValue> ReleaseContext::toArgs() const {
  return {context_id};
}

ReleaseContext ReleaseContext::fromArgs(const std::vector<c10::IValue>& args) {
  if (args.size() != 1 || !args[0].isInt()) {
    throw std::runtime_error("malformed context release message");
  }
  return ReleaseContext{args[0].toInt()};
}

}  // namespace distgrad::autograd
