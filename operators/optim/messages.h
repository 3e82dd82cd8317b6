#pragma once

#include <ATen/core/ivalue.h>

#include <cstdint>
#include <vector>

namespace distgrad::optim {

// The internal RPC message of the native optimizers, encoded and decoded
// side by side.

// Asks the owner of native optimizer optimizer_id to step it with the
// gradients it holds in context_id. context_carried says the caller made
// the step with that context current (and grad mode on), as an ordinary RPC
// would carry it: an owner the forward pass did not reach then takes part in
// the context (holding no gradients, it steps nothing) instead of failing.
struct StepOptimizer {
  static constexpr const char* kHandler = "dist_optim.step";

  int64_t optimizer_id = 0;
  int64_t context_id = 0;
  bool context_carried = false;

  std::vector<c10::IValue> toArgs() const;
  // Throws std::runtime_error on malformed arguments.
  static StepOptimizer fromArgs(const std::vector<c10::IValue>& args);
};

}  // namespace distgrad::optim
