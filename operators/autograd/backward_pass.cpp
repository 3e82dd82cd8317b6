#include "autograd/backward_pass.h"

#include "common/errors.h"
#include "rpc/reader_work.h"

#include <ATen/ops/ones_like.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/function.h>

#include <cstring>
#include <typeinfo>

namespace distgrad::autograd {

using torch::autograd::Edge;
using torch_private::AccumulateGrad;
using torch_private::InputBuffer;
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

// TorchScript's autodiff node, a class private to torch: it runs the gradient
// graph autodiff derived from a scripted function's builtin operators (only
// operators with a known formula join such a graph; no calls, no loops).
// Known by its type's name, which only torch's own class has.
bool isScriptAutodiffNode(const Node& node) {
  static constexpr const char* kTypeName =
      "N5torch3jit12_GLOBAL__N_127DifferentiableGraphBackwardE";
  return std::strcmp(typeid(node).name(), kTypeName) == 0;
}

}  // namespace

struct BackwardPass::Ready {
  NodePtr node;
  variable_list inputs;
  bool absent = false;  // no input arrived: all are known absent
};

struct BackwardPass::Task {
  explicit Task(int requester) : requester(requester) {}

  // A PassAnswer.
  FuturePtr done = c10::make_intrusive<c10::ivalue::Future>(c10::AnyType::get());
  // The worker whose message the task answers (-1: none, or one that runs
  // no carried messages): its messages go in the answer.
  const int requester;
  // 1 while the task drains its queue, plus 1 per message awaiting its
  // answer or carried message running.
  std::atomic<int> outstanding{1};
  std::atomic<bool> completed{false};
  std::deque<Ready> ready;  // only its own thread touches it
  std::mutex reports_mu;  // guards reports and carried
  c10::List<int64_t> reports;  // from the answers to its messages
  std::vector<PropagateGradients> carried;  // for requester, in the answer
};

BackwardPass::BackwardPass(int64_t id, bool retain_graph, std::shared_ptr<Context> context,
                           int rank, std::string worker_name, MessageSender send,
                           Offload offload, const torch::autograd::edge_list& root_edges,
                           const ContextGraph& graph)
    : id_(id),
      retain_graph_(retain_graph),
      context_id_(context->id()),
      rank_(rank),
      context_(context),
      worker_name_(std::move(worker_name)),
      send_(std::move(send)),
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
  for (const auto& node : graph.send_nodes) {
    visit(node.get());
    undecided_sends_.emplace(node->messageId(), node->peer());
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
  for (const auto& recv : graph.recvs) {
    if (!recv.node || !seen.count(recv.node.get())) {
      unreachable_recvs_.emplace_back(recv.peer, recv.message_id);
    }
  }
}

int64_t BackwardPass::numRunning() {
  return g_running_passes;
}

std::shared_ptr<BackwardPass::Task> BackwardPass::newTask(int requester) {
  if (active_tasks_++ == 0) {
    ++g_running_passes;
  }
  auto task = std::make_shared<Task>(requester);
  std::vector<std::pair<int, int64_t>> unreachable;
  {
    std::lock_guard<std::mutex> lock(mu_);
    unreachable.swap(unreachable_recvs_);
  }
  for (const auto& [peer, message_id] : unreachable) {
    PropagateGradients message;
    message.kind = PropagateGradients::kAbsent;
    message.message_id = message_id;
    send(task, peer, std::move(message));
  }
  return task;
}

FuturePtr BackwardPass::runFromRoots(const std::vector<at::Tensor>& roots,
                                     const torch::autograd::edge_list& root_edges) {
  auto task = newTask(-1);
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
        task->ready.push_back({edge.function, std::move(buffer->second.buffer)});
        buffers_.erase(buffer);
      }
    }
  }
  drain(task, std::nullopt);
  return task->done;
}

FuturePtr BackwardPass::runFromSendNode(int src, int64_t message_id, bool absent,
                                        variable_list grads) {
  auto task = newTask(src);
  startFromSendNode(task, message_id, absent, std::move(grads));
  return task->done;
}

void BackwardPass::runCarried(const std::shared_ptr<Task>& parent, PropagateGradients message) {
  auto answer = [this] {
    return "the answer to a gradient message of context " + std::to_string(context_id_);
  };
  if (message.context_id != context_id_ || message.pass_id != id_) {
    throw DistError(answer() + " carried a message of pass " + std::to_string(message.pass_id) +
                    " of context " + std::to_string(message.context_id) + " (this pass is " +
                    std::to_string(id_) + ")");
  }
  if (message.kind == PropagateGradients::kJoin) {
    throw DistError(answer() + " carried a join message, which only the pass's initiator sends");
  }
  ++parent->outstanding;
  // Its messages for parent's requester go in parent's answer.
  auto task = newTask(parent->requester);
  task->done->addCallback([self = shared_from_this(), parent](c10::ivalue::Future& done) {
    self->absorbAnswer(parent, done, /*run_carried=*/false);
  });
  startFromSendNode(task, message.message_id, message.kind == PropagateGradients::kAbsent,
                    std::move(message.grads));
}

void BackwardPass::startFromSendNode(const std::shared_ptr<Task>& task, int64_t message_id,
                                     bool absent, variable_list grads) {
  std::shared_ptr<Context> context;
  try {
    context = this->context();
  } catch (...) {
    fail(task, std::current_exception());
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    undecided_sends_.erase(message_id);
  }
  auto node = context->sendNode(message_id);
  if (!node) {
    if (absent) {
      finishOne(task);  // nothing waits for it
    } else {
      fail(task, std::make_exception_ptr(DistError(
                     "no send node for RPC message " + std::to_string(message_id) +
                     " in context " + std::to_string(context_id_) +
                     " (its graph was freed by an earlier backward pass; use "
                     "retain_graph=True to run backward more than once)")));
    }
    return;
  }
  if (absent) {
    task->ready.push_back({node, {}, true});
  } else {
    if (!retain_graph_) {
      context->removeSendNode(message_id);
    }
    task->ready.push_back({node, std::move(grads)});
  }
  constexpr auto kInlineBudget = std::chrono::microseconds(200);
  drain(task, std::chrono::steady_clock::now() + kInlineBudget);
}

FuturePtr BackwardPass::runJoin() {
  // The initiator's settling rounds run no carried messages.
  auto task = newTask(-1);
  finishOne(task);
  return task->done;
}

PassReport BackwardPass::report() {
  std::lock_guard<std::mutex> lock(mu_);
  PassReport report;
  report.worker = rank_;
  report.stamp = ++report_stamp_;
  for (const auto& [message_id, peer] : undecided_sends_) {
    report.undecided.push_back({peer, message_id});
  }
  return report;
}

bool BackwardPass::cheapOnReader(const Ready& ready) {
  // Builtin backward functions (generated ones are TraceableFunctions;
  // AccumulateGrad, distgrad's own nodes' bookkeeping and TorchScript's
  // autodiff node) on small inputs are bounded work; a custom Function
  // (Python or C++) or a hook is user code, which a reader thread never runs.
  if (ready.absent) {
    return true;
  }
  Node& node = *ready.node;
  if (!node.pre_hooks().empty() || !node.tensor_pre_hooks().empty() ||
      !node.retains_grad_hooks().empty() || !node.post_hooks().empty()) {
    return false;
  }
  bool builtin = dynamic_cast<const torch::autograd::TraceableFunction*>(&node) ||
                 dynamic_cast<const AccumulateGrad*>(&node) ||
                 dynamic_cast<const SendRpcBackward*>(&node) ||
                 dynamic_cast<const RecvRpcBackward*>(&node) ||
                 isScriptAutodiffNode(node);
  if (!builtin) {
    return false;
  }
  return rpc::tensorBytes(ready.inputs) <= rpc::kMaxReaderInputBytes;
}

void BackwardPass::drain(const std::shared_ptr<Task>& task,
                         std::optional<std::chrono::steady_clock::time_point> deadline) {
  c10::AutoGradMode no_grad(false);
  while (!task->ready.empty()) {
    if (deadline && (std::chrono::steady_clock::now() > *deadline ||
                     !cheapOnReader(task->ready.front()))) {
      offload_([self = shared_from_this(), task] { self->drain(task, std::nullopt); });
      return;
    }
    if (auto failed = error()) {
      fail(task, failed);
      return;
    }
    Ready ready = std::move(task->ready.front());
    task->ready.pop_front();
    try {
      execute(task, std::move(ready));
    } catch (...) {
      // Errors of this worker's nodes carry its name to the initiator.
      fail(task, std::make_exception_ptr(RemoteError::describe(std::current_exception(), worker_name_)));
      return;
    }
  }
  finishOne(task);
}

void BackwardPass::execute(const std::shared_ptr<Task>& task, Ready ready) {
  const NodePtr& node = ready.node;
  if (ready.absent) {
    if (auto* recv = dynamic_cast<RecvRpcBackward*>(node.get())) {
      PropagateGradients message;
      message.kind = PropagateGradients::kAbsent;
      message.message_id = recv->messageId();
      send(task, recv->peer(), std::move(message));
    } else if (!dynamic_cast<AccumulateGrad*>(node.get())) {
      distributeAbsence(*task, *node);
    }
    return;
  }
  variable_list inputs = callPreHooks(*node, std::move(ready.inputs));
  if (auto* accumulate = dynamic_cast<AccumulateGrad*>(node.get())) {
    context()->accumulateGrad(accumulate->variable, inputs.at(0));
    // As in the local engine, post-hooks see no outputs and the gradient.
    for (const auto& hook : node->post_hooks()) {
      (*hook)({}, inputs);
    }
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
  torch_private::validate_outputs(node->next_edges(), outputs, [&](const std::string& msg) {
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
      task.ready.push_back({edge.function, std::move(buffer->second.buffer)});
      buffers_.erase(buffer);
    }
  }
}

void BackwardPass::distributeAbsence(Task& task, Node& node) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const Edge& edge : node.next_edges()) {
    if (!edge.is_valid()) {
      continue;
    }
    Node* next = edge.function.get();
    if (--dependencies_[next] > 0) {
      continue;
    }
    auto buffer = buffers_.find(next);
    if (buffer == buffers_.end()) {
      task.ready.push_back({edge.function, {}, true});
    } else {
      task.ready.push_back({edge.function, std::move(buffer->second.buffer)});
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
  if (!retain_graph_) {
    context()->removeRecvNode(node.messageId());
  }
  for (size_t i = 0; i < grads.size(); ++i) {
    if (!grads[i].defined()) {
      grads[i] = node.input_metadata(i).zeros_like();
    }
  }
  PropagateGradients message;
  message.message_id = node.messageId();
  message.grads = std::move(grads);
  send(task, node.peer(), std::move(message));
}

void BackwardPass::send(const std::shared_ptr<Task>& task, int peer,
                        PropagateGradients message) {
  message.context_id = context_id_;
  message.pass_id = id_;
  message.retain_graph = retain_graph_;
  if (peer == task->requester) {
    std::lock_guard<std::mutex> lock(task->reports_mu);
    task->carried.push_back(std::move(message));
    return;
  }
  ++task->outstanding;
  FuturePtr answered;
  try {
    answered = send_(peer, std::move(message));
  } catch (...) {
    fail(task, std::current_exception());
    return;
  }
  answered->addCallback([self = shared_from_this(), task](c10::ivalue::Future& f) {
    self->absorbAnswer(task, f, /*run_carried=*/true);
  });
}

void BackwardPass::absorbAnswer(const std::shared_ptr<Task>& task, c10::ivalue::Future& answered,
                                bool run_carried) {
  if (answered.hasError()) {
    fail(task, answered.exception_ptr());
    return;
  }
  try {
    auto answer = PassAnswer::fromIValue(answered.value());
    std::vector<PropagateGradients> to_run;
    {
      std::lock_guard<std::mutex> lock(task->reports_mu);
      for (int64_t v : answer.reports) {
        task->reports.push_back(v);
      }
      auto& carried = run_carried ? to_run : task->carried;
      for (auto& message : answer.carried) {
        carried.push_back(std::move(message));
      }
    }
    for (auto& message : to_run) {
      runCarried(task, std::move(message));
    }
  } catch (...) {
    fail(task, std::current_exception());
    return;
  }
  finishOne(task);
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
    PassAnswer answer;
    report().appendTo(answer.reports);
    {
      std::lock_guard<std::mutex> lock(task->reports_mu);
      for (int64_t v : task->reports) {
        answer.reports.push_back(v);
      }
      answer.carried = std::move(task->carried);
    }
    task->done->markCompleted(answer.toIValue());
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
