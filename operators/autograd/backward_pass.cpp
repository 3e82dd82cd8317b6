#include "autograd/backward_pass.h"

#include "common/errors.h"
#include "rpc/response.h"

#include <ATen/ops/ones_like.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/engine.h>
#include <torch/csrc/autograd/functions/accumulate_grad.h>
#include <torch/csrc/autograd/variable.h>

namespace distgrad::autograd {

using torch::autograd::Edge;
using torch::autograd::InputBuffer;
using torch::autograd::Node;
using torch::autograd::variable_list;

namespace {

std::atomic<int64_t> g_running_passes{0};

// Runs the hooks the local engine runs before a node: tensor pre-hooks
// (including those of tensors that retain grad), then the node's pre-hooks.
variable_list callPreHooks(Node& node, variable_list inputs) {
  for (const auto& hook : node.tensor_pre_hooks()) {
    inputs = (*hook)(inputs);
  }
  for (const auto& [index, hook] : node.retains_grad_hooks()) {
    inputs = (*hook)(inputs);
  }
  for (const auto& hook : node.pre_hooks()) {
    inputs = (*hook)(inputs);
  }
  return inputs;
}

}  // namespace

struct BackwardPass::Task {
  FuturePtr done = c10::make_intrusive<c10::ivalue::Future>(c10::NoneType::get());
  // 1 while the task drains its queue, plus 1 per gradient message awaiting
  // its answer.
  std::atomic<int> outstanding{1};
  std::atomic<bool> completed{false};
  std::deque<std::pair<NodePtr, variable_list>> ready;  // only its own thread touches it
};

BackwardPass::BackwardPass(int64_t id, bool retain_graph, std::shared_ptr<Context> context,
                           std::string worker_name, GradientSender send_gradients,
                           Offload offload, const torch::autograd::edge_list& root_edges,
                           const std::vector<c10::intrusive_ptr<SendRpcBackward>>& send_nodes)
    : id_(id),
      retain_graph_(retain_graph),
      context_id_(context->id()),
      context_(context),
      worker_name_(std::move(worker_name)),
      send_gradients_(std::move(send_gradients)),
      offload_(std::move(offload)) {
  std::vector<Node*> stack;
  std::unordered_set<Node*> seen;
  auto visit = [&](Node* node) {
    if (node && seen.insert(node).second) {
      stack.push_back(node);
    }
  };
  for (const auto& edge : root_edges) {
    visit(edge.function.get());
  }
  for (const auto& node : send_nodes) {
    visit(node.get());
  }
  while (!stack.empty()) {
    Node* node = stack.back();
    stack.pop_back();
    for (const auto& edge : node->next_edges()) {
      if (Node* next = edge.function.get()) {
        ++dependencies_[next];
        visit(next);
      }
    }
  }
}

int64_t BackwardPass::numRunning() {
  return g_running_passes;
}

std::shared_ptr<BackwardPass::Task> BackwardPass::newTask() {
  if (active_tasks_++ == 0) {
    ++g_running_passes;
  }
  return std::make_shared<Task>();
}

FuturePtr BackwardPass::runFromRoots(const std::vector<at::Tensor>& roots,
                                     const torch::autograd::edge_list& root_edges) {
  auto task = newTask();
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = 0; i < roots.size(); ++i) {
      Node* fn = root_edges[i].function.get();
      auto [it, inserted] = buffers_.try_emplace(fn, fn->num_inputs());
      it->second.add(root_edges[i].input_nr, at::ones_like(roots[i], at::MemoryFormat::Preserve),
                     std::nullopt, std::nullopt, fn);
    }
    for (const auto& edge : root_edges) {
      Node* fn = edge.function.get();
      auto buffer = buffers_.find(fn);
      if (buffer != buffers_.end() && dependencies_[fn] == 0) {
        task->ready.emplace_back(edge.function, std::move(buffer->second.buffer));
        buffers_.erase(buffer);
      }
    }
  }
  drain(task, std::nullopt);
  return task->done;
}

FuturePtr BackwardPass::runFromSendNode(int64_t message_id, variable_list grads) {
  auto context = this->context();
  auto task = newTask();
  auto node = context->sendNode(message_id);
  if (!node) {
    fail(task, std::make_exception_ptr(DistError(
                   "no send node for RPC message " + std::to_string(message_id) + " in context " +
                   std::to_string(context_id_) + " (its graph was freed by an earlier backward "
                   "pass; use retain_graph=True to run backward more than once)")));
    return task->done;
  }
  if (!retain_graph_) {
    context->removeSendNode(message_id);
  }
  task->ready.emplace_back(node, std::move(grads));
  constexpr auto kInlineBudget = std::chrono::microseconds(200);
  drain(task, std::chrono::steady_clock::now() + kInlineBudget);
  return task->done;
}

void BackwardPass::drain(const std::shared_ptr<Task>& task,
                         std::optional<std::chrono::steady_clock::time_point> deadline) {
  c10::AutoGradMode no_grad(false);
  while (!task->ready.empty()) {
    if (deadline && std::chrono::steady_clock::now() > *deadline) {
      offload_([self = shared_from_this(), task] { self->drain(task, std::nullopt); });
      return;
    }
    if (auto failed = error()) {
      fail(task, failed);
      return;
    }
    auto [node, inputs] = std::move(task->ready.front());
    task->ready.pop_front();
    try {
      execute(task, node, std::move(inputs));
    } catch (...) {
      // Errors of this worker's nodes carry its name to the initiator.
      fail(task, rpc::Response::fromException(std::current_exception(), worker_name_).toException());
      return;
    }
  }
  finishOne(task);
}

void BackwardPass::execute(const std::shared_ptr<Task>& task, const NodePtr& node,
                           variable_list inputs) {
  inputs = callPreHooks(*node, std::move(inputs));
  if (auto* accumulate = dynamic_cast<torch::autograd::AccumulateGrad*>(node.get())) {
    context()->accumulateGrad(accumulate->variable, inputs.at(0));
    return;
  }
  if (auto* recv = dynamic_cast<RecvRpcBackward*>(node.get())) {
    sendToPeer(task, *recv, std::move(inputs));
    return;
  }
  if (!retain_graph_) {
    node->will_release_variables();
  }
  variable_list post_hook_inputs = node->post_hooks().empty() ? variable_list() : inputs;
  variable_list outputs = (*node)(std::move(inputs));
  if (!retain_graph_) {
    node->release_variables();
  }
  torch::autograd::validate_outputs(node->next_edges(), outputs, [&](const std::string& msg) {
    return "function " + node->name() + " returned an invalid gradient: " + msg;
  });
  for (const auto& hook : node->post_hooks()) {
    outputs = (*hook)(outputs, post_hook_inputs);
  }
  distribute(*task, *node, std::move(outputs));
}

void BackwardPass::distribute(Task& task, Node& node, variable_list outputs) {
  std::lock_guard<std::mutex> lock(mu_);
  const auto& edges = node.next_edges();
  for (size_t i = 0; i < edges.size() && i < outputs.size(); ++i) {
    const Edge& edge = edges[i];
    if (!edge.is_valid()) {
      continue;
    }
    Node* next = edge.function.get();
    auto [buffer, inserted] = buffers_.try_emplace(next, next->num_inputs());
    buffer->second.add(edge.input_nr, std::move(outputs[i]), std::nullopt, std::nullopt, next);
    if (--dependencies_[next] <= 0) {
      task.ready.emplace_back(edge.function, std::move(buffer->second.buffer));
      buffers_.erase(buffer);
    }
  }
}

void BackwardPass::sendToPeer(const std::shared_ptr<Task>& task, RecvRpcBackward& node,
                              variable_list grads) {
  if (!node.markRan(retain_graph_)) {
    throw DistError("trying to run backward through RPC message " +
                    std::to_string(node.messageId()) + " of context " +
                    std::to_string(node.contextId()) +
                    " a second time, but its graph was freed by an earlier backward pass; "
                    "specify retain_graph=True to run backward more than once");
  }
  for (size_t i = 0; i < grads.size(); ++i) {
    if (!grads[i].defined()) {
      grads[i] = node.input_metadata(i).zeros_like();
    }
  }
  ++task->outstanding;
  FuturePtr answered = send_gradients_(*this, node, std::move(grads));
  answered->addCallback([self = shared_from_this(), task](c10::ivalue::Future& f) {
    if (f.hasError()) {
      self->fail(task, f.exception_ptr());
    } else {
      self->finishOne(task);
    }
  });
}

void BackwardPass::finishOne(const std::shared_ptr<Task>& task) {
  if (--task->outstanding == 0) {
    complete(task, error());
  }
}

void BackwardPass::fail(const std::shared_ptr<Task>& task, std::exception_ptr failure) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!error_) {
      error_ = failure;
    }
  }
  complete(task, failure);
}

void BackwardPass::complete(const std::shared_ptr<Task>& task, std::exception_ptr failure) {
  if (task->completed.exchange(true)) {
    return;
  }
  if (--active_tasks_ == 0) {
    --g_running_passes;
  }
  if (failure) {
    task->done->setError(failure);
  } else {
    task->done->markCompleted(c10::IValue());
  }
}

std::shared_ptr<Context> BackwardPass::context() const {
  auto context = context_.lock();
  if (!context) {
    throw DistError("distributed autograd context " + std::to_string(context_id_) +
                    " was released during its backward pass");
  }
  return context;
}

std::exception_ptr BackwardPass::error() const {
  std::lock_guard<std::mutex> lock(mu_);
  return error_;
}

}  // namespace distgrad::autograd
