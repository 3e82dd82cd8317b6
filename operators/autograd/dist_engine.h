#pragma once

#include "autograd/backward_pass.h"
#include "rpc/agent.h"

#include <ATen/core/Tensor.h>

#include <vector>

namespace distgrad::autograd {

// Starts distributed backward passes and takes part in those other workers
// start. See BackwardPass for the algorithm.
class DistEngine {
 public:
  // Runs a distributed backward pass from roots (scalar tensors that require
  // grad) in context_id and returns when it has finished on every worker.
  // Each gradient message of the pass, on any worker, must be answered
  // within timeout_seconds (negative: the RPC default; 0: no limit).
  // Throws c10::ValueError for bad arguments or an unknown context, and the
  // first error of any worker (naming that worker; DistTimeoutError for a
  // worker that did not answer in time) otherwise.
  static void backward(int64_t context_id, const std::vector<at::Tensor>& roots,
                       bool retain_graph, double timeout_seconds);

  // Registers the handler for gradients sent by peers with agent.
  static void install(rpc::Agent& agent);
};

}  // namespace distgrad::autograd
