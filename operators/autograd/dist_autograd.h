#pragma once

#include "rpc/agent.h"

#include <ATen/core/Dict.h>
#include <ATen/core/Tensor.h>

#include <map>
#include <string>

namespace distgrad::autograd {

// The API of distributed autograd, shared by the TorchScript operators and
// the Python bindings.

// Connects distributed autograd to agent: records RPCs in contexts, serves
// gradient and release messages. Called when RPC starts.
void install(rpc::Agent& agent);
// Drops every context; called when RPC shuts down.
void uninstall();

// Creates a context and makes it current on this thread. Throws DistError if
// a context is already current here.
int64_t enterContext();
// Makes no context current (if context_id is) and releases it here and on
// every worker it reached.
void exitContext(int64_t context_id);

c10::Dict<at::Tensor, at::Tensor> getGradients(int64_t context_id);

// num_autograd_contexts (live contexts here), num_current_backward_passes.
std::map<std::string, int64_t> debugInfo();

}  // namespace distgrad::autograd
