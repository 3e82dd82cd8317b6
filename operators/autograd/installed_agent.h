#pragma once

#include "rpc/agent.h"

#include <memory>

namespace distgrad::autograd {

// The RPC agent distributed autograd works with: the one autograd::install
// was given (held weakly; the agent owns the runtime), until uninstall.
// Null when there is none (a local-only use of contexts).
std::shared_ptr<rpc::Agent> installedAgent();
void setInstalledAgent(const std::shared_ptr<rpc::Agent>& agent);

}  // namespace distgrad::autograd
