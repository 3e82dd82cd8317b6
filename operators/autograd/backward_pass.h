#pragma once

#include "autograd/context.h"
#include "autograd/recv_rpc_backward.h"
#include "autograd/send_rpc_backward.h"

#include <ATen/core/ivalue.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/input_buffer.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

namespace distgrad::autograd {

using FuturePtr = c10::intrusive_ptr<c10::ivalue::Future>;

// One worker's share of one distributed backward pass (FAST mode).
//
// Dependencies are counted once, over everything reachable from the roots
// (on the initiating worker) and from every send node of the context: each
// send node is assumed to receive gradients, and each node runs once, when
// all of its inputs have arrived, with their sum. Leaf gradients go to the
// context, never to .grad.
//
// Work is done in tasks: the initiator's call, and each gradient message
// from a peer. A task runs the nodes that become ready through its own
// deliveries, on the thread that started it, and completes when those nodes
// have run and every gradient message they sent to peers has been answered;
// so a peer answers a message only after everything it started is done, and
// the initiator's task completes when the whole distributed pass has.
//
// Threading: tasks of one pass may run concurrently on different threads;
// mu_ guards the dependency counts and input buffers. A node error fails the
// task and the pass: later tasks of the pass fail at once with that error.
class BackwardPass : public std::enable_shared_from_this<BackwardPass> {
 public:
  // Sends grads (one per input of node, zero-filled) to the peer holding
  // the matching send node; the future completes when the peer's task for
  // them has.
  using GradientSender = std::function<FuturePtr(
      const BackwardPass& pass, const RecvRpcBackward& node, torch::autograd::variable_list grads)>;
  // Runs work on another thread (a pool).
  using Offload = std::function<void(std::function<void()>)>;

  BackwardPass(int64_t id, bool retain_graph, std::shared_ptr<Context> context,
               std::string worker_name, GradientSender send_gradients, Offload offload,
               const torch::autograd::edge_list& root_edges,
               const std::vector<c10::intrusive_ptr<SendRpcBackward>>& send_nodes);

  int64_t id() const { return id_; }
  bool retainGraph() const { return retain_graph_; }
  int64_t contextId() const { return context_id_; }
  // Whether a task of this pass is under way on this worker.
  bool running() const { return active_tasks_ > 0; }

  // The initiator's task: a gradient of ones for each root.
  FuturePtr runFromRoots(const std::vector<at::Tensor>& roots,
                         const torch::autograd::edge_list& root_edges);

  // A peer's task: the gradients for the send node recorded as message_id.
  // It starts on the calling thread (a reader thread, to save a thread hop)
  // and moves to offload once it has run for a while.
  FuturePtr runFromSendNode(int64_t message_id, torch::autograd::variable_list grads);

  // Number of passes with a task under way in this process.
  static int64_t numRunning();

 private:
  struct Task;
  using NodePtr = c10::intrusive_ptr<torch::autograd::Node>;

  std::shared_ptr<Task> newTask();
  // Runs task's ready nodes; past deadline (if any) the rest is offloaded.
  void drain(const std::shared_ptr<Task>& task,
             std::optional<std::chrono::steady_clock::time_point> deadline);
  void execute(const std::shared_ptr<Task>& task, const NodePtr& node,
               torch::autograd::variable_list inputs);
  void sendToPeer(const std::shared_ptr<Task>& task, RecvRpcBackward& node,
                  torch::autograd::variable_list grads);
  // Adds outputs to the input buffers of node's next functions; those that
  // become ready join task's queue.
  void distribute(Task& task, torch::autograd::Node& node,
                  torch::autograd::variable_list outputs);
  void finishOne(const std::shared_ptr<Task>& task);
  void fail(const std::shared_ptr<Task>& task, std::exception_ptr error);
  void complete(const std::shared_ptr<Task>& task, std::exception_ptr error);
  std::exception_ptr error() const;
  std::shared_ptr<Context> context() const;

  const int64_t id_;
  const bool retain_graph_;
  const int64_t context_id_;
  // Weak: the context holds its pass. Once the context is released, nodes
  // that would touch it fail the pass.
  const std::weak_ptr<Context> context_;
  const std::string worker_name_;
  const GradientSender send_gradients_;
  const Offload offload_;

  mutable std::mutex mu_;  // guards dependencies_, buffers_, error_
  std::unordered_map<torch::autograd::Node*, int> dependencies_;
  std::unordered_map<torch::autograd::Node*, torch::autograd::InputBuffer> buffers_;
  std::exception_ptr error_;
  std::atomic<int> active_tasks_{0};
};

}  // namespace distgrad::autograd
