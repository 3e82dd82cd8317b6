#pragma once

#include "autograd/context.h"
#include "autograd/messages.h"
#include "autograd/recv_rpc_backward.h"
#include "autograd/send_rpc_backward.h"

#include <ATen/core/ivalue.h>
#include "common/torch_private.h"

#include <torch/csrc/autograd/function.h>

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

// One worker's share of one distributed backward pass.
//
// Dependencies are counted once, over everything reachable from the roots
// (on the initiating worker) and from every send node of the context. Each
// send node then learns from the worker holding its RecvRpcBackward either
// its gradients or that it gets none in this pass (the "absent" news), so
// every node runs once, when each of its inputs has arrived or is known
// absent, with the sum of those that arrived; a node all of whose inputs are
// absent does not run and passes the news on. A worker knows at the start of
// its share which receive nodes the pass cannot reach (not reachable from its
// roots and send nodes, or freed with the user's graph) and declares them
// absent at once. An RPC whose results the roots do not use thus neither
// blocks the pass nor drops gradients ("smart mode"). Leaf gradients go to
// the context, never to .grad.
//
// Work is done in tasks: the initiator's call, and each message from a peer
// (gradients, absent news, or a request to join). A task runs the nodes that
// become ready through its own deliveries, and completes when those nodes
// have run and every message they sent to peers has been answered; so a peer
// answers a message only after everything it started is done, and the
// initiator's task completes when the whole distributed pass has. Answers
// carry each reached worker's report of the send nodes still waiting (see
// PassReport): a worker that no message reached has declared nothing, and the
// initiator asks it to join (DistEngine::backward).
//
// A message for the very worker whose message a task answers is not sent:
// it travels in the answer (PassAnswer), and the answered task runs it in a
// task of its own that it waits for, whose messages for that task's
// requester travel the same way. The gradients of an RPC's arguments thus
// ride back on the answer to the gradients of its result.
//
// Threading: tasks of one pass may run concurrently on different threads;
// mu_ guards the dependency counts, input buffers and send states. A node
// error fails the task and the pass: later tasks of the pass fail at once.
class BackwardPass : public std::enable_shared_from_this<BackwardPass> {
 public:
  // Sends message (all fields but timeout set) to peer; the future completes
  // with the peer's encoded PassReports when its task for it has.
  using MessageSender = std::function<FuturePtr(int peer, PropagateGradients message)>;
  // Runs work on another thread (a pool).
  using Offload = std::function<void(std::function<void()>)>;

  BackwardPass(int64_t id, bool retain_graph, std::shared_ptr<Context> context, int rank,
               std::string worker_name, MessageSender send, Offload offload,
               const torch::autograd::edge_list& root_edges, const ContextGraph& graph);

  int64_t id() const { return id_; }
  bool retainGraph() const { return retain_graph_; }
  int64_t contextId() const { return context_id_; }
  // Whether a task of this pass is under way on this worker.
  bool running() const { return active_tasks_ > 0; }

  // The initiator's task: a gradient of ones for each root. Completes with
  // the encoded reports of every worker it reached.
  FuturePtr runFromRoots(const std::vector<at::Tensor>& roots,
                         const torch::autograd::edge_list& root_edges);

  // The task of a message from peer src: the gradients (or, if absent, the
  // news that there are none) for the send node recorded as message_id. It
  // starts on the calling thread (a reader thread, to save a thread hop)
  // while the nodes it runs are builtin ones on small inputs, and moves to
  // offload before anything else (a custom Function, a hook, large tensors)
  // or after 200 us. Completes with the encoded PassAnswer.
  FuturePtr runFromSendNode(int src, int64_t message_id, bool absent,
                            torch::autograd::variable_list grads);
  // A peer's task that only joins the pass (declaring what it cannot reach).
  FuturePtr runJoin();

  // This worker's send nodes still waiting for their gradients or their
  // absent news, as a report.
  PassReport report();

  // Number of passes with a task under way in this process.
  static int64_t numRunning();

 private:
  struct Task;
  using NodePtr = c10::intrusive_ptr<torch::autograd::Node>;

  struct Ready;

  // Starts a task whose messages for requester (-1: none) travel in its
  // answer; the first task of the pass on this worker also declares the
  // receive nodes the pass cannot reach.
  std::shared_ptr<Task> newTask(int requester);
  // Gives task the gradients (or the absent news) for the send node of
  // message_id, and runs it (see runFromSendNode).
  void startFromSendNode(const std::shared_ptr<Task>& task, int64_t message_id, bool absent,
                         torch::autograd::variable_list grads);
  // Runs a message that came in the answer to one of parent's messages, in
  // a task parent waits for.
  void runCarried(const std::shared_ptr<Task>& parent, PropagateGradients message);
  // Runs task's ready nodes. On a reader thread (deadline set), work that is
  // not cheap and bounded, or anything past deadline, is offloaded.
  void drain(const std::shared_ptr<Task>& task,
             std::optional<std::chrono::steady_clock::time_point> deadline);
  static bool cheapOnReader(const Ready& ready);
  void execute(const std::shared_ptr<Task>& task, Ready ready);
  void sendToPeer(const std::shared_ptr<Task>& task, RecvRpcBackward& node,
                  torch::autograd::variable_list grads);
  void send(const std::shared_ptr<Task>& task, int peer, PropagateGradients message);
  // Takes in the answer to one of task's messages, or the result of a task
  // of a message carried to it: the reports, and the carried messages (run
  // here if run_carried, else passed on in task's own answer). Then counts
  // it done.
  void absorbAnswer(const std::shared_ptr<Task>& task, c10::ivalue::Future& answered,
                    bool run_carried);
  // Adds outputs to the input buffers of node's next functions; those that
  // become ready join task's queue.
  void distribute(Task& task, torch::autograd::Node& node,
                  torch::autograd::variable_list outputs);
  // Tells node's next functions that no gradient comes from node.
  void distributeAbsence(Task& task, torch::autograd::Node& node);
  void finishOne(const std::shared_ptr<Task>& task);
  void fail(const std::shared_ptr<Task>& task, std::exception_ptr error);
  void complete(const std::shared_ptr<Task>& task, std::exception_ptr error);
  std::exception_ptr error() const;
  std::shared_ptr<Context> context() const;

  const int64_t id_;
  const bool retain_graph_;
  const int64_t context_id_;
  const int rank_;
  // Weak: the context holds its pass. Once the context is released, nodes
  // that would touch it fail the pass.
  const std::weak_ptr<Context> context_;
  const std::string worker_name_;
  const MessageSender send_;
  const Offload offload_;

  mutable std::mutex mu_;  // guards what follows
  // Send nodes counted as sources that have received neither gradients nor
  // the absent news: message id -> peer.
  std::unordered_map<int64_t, int> undecided_sends_;
  // Receive nodes the pass cannot reach, (peer, message id); the first task
  // declares them absent and clears this.
  std::vector<std::pair<int, int64_t>> unreachable_recvs_;
  int64_t report_stamp_ = 0;
  std::unordered_map<torch::autograd::Node*, int> dependencies_;
  std::unordered_map<torch::autograd::Node*, torch_private::InputBuffer> buffers_;
  std::exception_ptr error_;
  std::atomic<int> active_tasks_{0};
};

}  // namespace distgrad::autograd
