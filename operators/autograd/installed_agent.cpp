#include "autograd/installed_agent.h"

#include <mutex>

namespace distgrad::autograd {

namespace {

std::mutex g_mu;  // guards g_agent
std::weak_ptr<rpc::Agent> g_agent;

}  // namespace

std::shared_ptr<rpc::Agent> installedAgent() {
  std::lock_guard<std::mutex> lock(g_mu);
  return g_agent.lock();
}

void setInstalledAgent(const std::shared_ptr<rpc::Agent>& agent) {
  std::lock_guard<std::mutex> lock(g_mu);
  g_agent = agent;
}

}  // namespace distgrad::autograd
