#include "autograd/context.h"

#include "autograd/backward_pass.h"
#include "common/errors.h"

#include <ATen/ops/add.h>
#include <ATen/ops/clone.h>

namespace distgrad::autograd {

void Context::addSendNode(c10::intrusive_ptr<SendRpcBackward> node) {
  std::lock_guard<std::mutex> lock(mu_);
  int64_t message_id = node->messageId();
  send_nodes_.emplace(message_id, std::move(node));
}

c10::intrusive_ptr<SendRpcBackward> Context::sendNode(int64_t message_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = send_nodes_.find(message_id);
  return it == send_nodes_.end() ? nullptr : it->second;
}

void Context::removeSendNode(int64_t message_id) {
  std::lock_guard<std::mutex> lock(mu_);
  send_nodes_.erase(message_id);
}

void Context::addRecvNode(const c10::intrusive_ptr<RecvRpcBackward>& node) {
  std::lock_guard<std::mutex> lock(mu_);
  recv_nodes_.emplace(node->messageId(),
                      std::make_pair(node->peer(), c10::weak_intrusive_ptr<RecvRpcBackward>(node)));
}

void Context::removeRecvNode(int64_t message_id) {
  std::lock_guard<std::mutex> lock(mu_);
  recv_nodes_.erase(message_id);
}

void Context::addKnownWorker(int rank) {
  std::lock_guard<std::mutex> lock(mu_);
  known_workers_.insert(rank);
}

std::set<int> Context::knownWorkers() const {
  std::lock_guard<std::mutex> lock(mu_);
  return known_workers_;
}

void Context::accumulateGrad(const at::Tensor& variable, const at::Tensor& grad) {
  if (!grad.defined()) {
    return;
  }
  std::lock_guard<std::mutex> lock(mu_);
  auto it = grads_.find(variable.unsafeGetTensorImpl());
  if (it == grads_.end()) {
    // A copy: the same gradient tensor may reach several leaves (both
    // inputs of an add), and each leaf's gradient must be its own.
    grads_.try_emplace(variable.unsafeGetTensorImpl(), variable, grad.detach().clone());
  } else {
    it->second.second = at::add(it->second.second, grad.detach());
  }
}

c10::Dict<at::Tensor, at::Tensor> Context::gradients() const {
  std::lock_guard<std::mutex> lock(mu_);
  c10::Dict<at::Tensor, at::Tensor> result;
  for (const auto& [impl, entry] : grads_) {
    result.insert(entry.first, entry.second);
  }
  return result;
}

std::vector<at::Tensor> Context::gradientsOf(const std::vector<at::Tensor>& variables) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<at::Tensor> result;
  result.reserve(variables.size());
  for (const auto& variable : variables) {
    auto it = grads_.find(variable.unsafeGetTensorImpl());
    result.push_back(it == grads_.end() ? at::Tensor() : it->second.second);
  }
  return result;
}

std::shared_ptr<BackwardPass> Context::passFor(int64_t pass_id, const PassFactory& make) {
  std::lock_guard<std::mutex> lock(mu_);
  if (pass_ && pass_->id() == pass_id) {
    return pass_;
  }
  if (pass_ && pass_->running()) {
    throw DistError("another distributed backward pass is still running in context " +
                    std::to_string(id_));
  }
  ContextGraph graph;
  graph.send_nodes.reserve(send_nodes_.size());
  for (const auto& [id, node] : send_nodes_) {
    graph.send_nodes.push_back(node);
  }
  for (const auto& [id, recv] : recv_nodes_) {
    graph.recvs.push_back({recv.first, id, recv.second.lock()});
  }
  pass_ = make(graph);
  return pass_;
}

}  // namespace distgrad::autograd
