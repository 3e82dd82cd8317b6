#pragma once

#include "autograd/recv_rpc_backward.h"
#include "autograd/send_rpc_backward.h"

#include <ATen/core/Dict.h>
#include <ATen/core/Tensor.h>

#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <unordered_map>
#include <vector>

namespace distgrad::autograd {

class BackwardPass;

// The RPC edges of a context's graph on one worker when a pass starts.
struct ContextGraph {
  std::vector<c10::intrusive_ptr<SendRpcBackward>> send_nodes;
  // Messages received in the context whose RecvRpcBackward a pass may still
  // run: (peer, message id) with the node, null if the graph holding it has
  // been freed.
  struct Recv {
    int peer;
    int64_t message_id;
    c10::intrusive_ptr<RecvRpcBackward> node;
  };
  std::vector<Recv> recvs;
};

// What one worker holds for one distributed autograd context: the send and
// receive nodes recorded in it (receive nodes weakly: the user's graph owns
// them), the workers it sent messages to (who must release it too), the
// gradients of its leaves, and the backward pass under way.
//
// Threading: every method is safe from any thread; mu_ guards all members.
class Context {
 public:
  explicit Context(int64_t id) : id_(id) {}

  int64_t id() const { return id_; }

  void addSendNode(c10::intrusive_ptr<SendRpcBackward> node);
  // Null if no send node with that id is held (never recorded, or freed by
  // a backward pass that did not retain the graph).
  c10::intrusive_ptr<SendRpcBackward> sendNode(int64_t message_id) const;
  void removeSendNode(int64_t message_id);
  void addRecvNode(const c10::intrusive_ptr<RecvRpcBackward>& node);
  // Called once a pass that does not retain the graph has run the node.
  void removeRecvNode(int64_t message_id);

  void addKnownWorker(int rank);
  std::set<int> knownWorkers() const;

  // Adds grad to the gradient held for variable (a leaf).
  void accumulateGrad(const at::Tensor& variable, const at::Tensor& grad);
  c10::Dict<at::Tensor, at::Tensor> gradients() const;
  // The gradient held for each of variables, undefined for those without
  // one (one lookup per variable, no dict built: an optimizer's step).
  std::vector<at::Tensor> gradientsOf(const std::vector<at::Tensor>& variables) const;

  // The pass with this id, created by make(graph) if no pass is under way
  // (make runs under the context's lock and must not call back into it).
  // Throws DistError if another pass is still running in this context.
  using PassFactory = std::function<std::shared_ptr<BackwardPass>(const ContextGraph& graph)>;
  std::shared_ptr<BackwardPass> passFor(int64_t pass_id, const PassFactory& make);

 private:
  const int64_t id_;
  mutable std::mutex mu_;
  std::unordered_map<int64_t, c10::intrusive_ptr<SendRpcBackward>> send_nodes_;
  // message id -> (peer, node)
  std::unordered_map<int64_t, std::pair<int, c10::weak_intrusive_ptr<RecvRpcBackward>>> recv_nodes_;
  std::set<int> known_workers_;
  // Keyed by the leaf's TensorImpl; the leaf itself is kept as the dict key.
  std::unordered_map<const c10::TensorImpl*, std::pair<at::Tensor, at::Tensor>> grads_;
  std::shared_ptr<BackwardPass> pass_;
};

}  // namespace distgrad::autograd
