#include "optim/messages.h"

#include <stdexcept>

namespace distgrad::optim {

std::vector<c10::IValue> StepOptimizer::toArgs() const {
  return {optimizer_id, context_id, context_carried};
}

StepOptimizer StepOptimizer::fromArgs(const std::vector<c10::IValue>& args) {
  if (args.size() != 3 || !args[0].isInt() || !args[1].isInt() || !args[2].isBool()) {
    throw std::runtime_error("malformed optimizer step message");
  }
  return StepOptimizer{args[0].toInt(), args[1].toInt(), args[2].toBool()};
}

}  // namespace distgrad::optim
