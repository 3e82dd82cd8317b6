#pragma once

#include <ATen/core/List.h>
#include <ATen/core/Tensor.h>
#include <ATen/core/ivalue.h>

#include <string>
#include <vector>

namespace distgrad::autograd {

// Internal RPC messages of distributed autograd: the handler name each is
// sent to, and its arguments encoded and decoded side by side.

// A message of backward pass pass_id, from the worker holding the
// RecvRpcBackward of RPC message message_id to the one holding its send node:
// the gradients for that send node, or the news that it gets none in this
// pass (kAbsent: the roots do not use the message's tensors). kJoin (no
// message id) asks a worker to take part in the pass, so that it declares
// the messages it received that the pass will not reach.
struct PropagateGradients {
  static constexpr const char* kHandler = "dist_autograd.propagate_gradients";

  enum Kind : int64_t { kGradients = 0, kAbsent = 1, kJoin = 2 };

  Kind kind = kGradients;
  int64_t context_id = 0;
  int64_t pass_id = 0;
  int64_t message_id = 0;
  bool retain_graph = false;
  // Bounds each gradient message of the pass (0: none), as the initiator's
  // backward() was given.
  double timeout_seconds = 0;
  std::vector<at::Tensor> grads;

  std::vector<c10::IValue> toArgs() const;
  // Throws std::runtime_error on malformed arguments.
  static PropagateGradients fromArgs(const std::vector<c10::IValue>& args);
};

// What a worker's answer to a PropagateGradients message carries: for each
// worker reached (itself and those it sent messages to), the send nodes it
// still holds that have received neither gradients nor kAbsent, as of a
// snapshot numbered by stamp (higher: later). Encoded as a flat list of ints.
struct PassReport {
  struct Undecided {
    int64_t peer;  // where the send node's RPC message went
    int64_t message_id;
  };
  int64_t worker = 0;
  int64_t stamp = 0;
  std::vector<Undecided> undecided;

  void appendTo(c10::List<int64_t>& encoded) const;
  // Throws std::runtime_error on a malformed list.
  static std::vector<PassReport> parse(const c10::List<int64_t>& encoded);
};

// A worker's answer to a PropagateGradients message: the reports of every
// worker its task reached, and the messages of the pass for the worker it
// answers that the task produced. Those travel in the answer instead of as
// messages of their own, each answered in turn: a backward pass that goes
// out to a worker and comes back (the gradients of an RPC's arguments, on
// the worker that sent them) takes one round trip per hop, not two. The
// answered worker runs them before its own task completes.
struct PassAnswer {
  c10::List<int64_t> reports;  // PassReports, appended
  std::vector<PropagateGradients> carried;

  // The reports alone when nothing is carried.
  c10::IValue toIValue() const;
  // Throws std::runtime_error on a malformed answer.
  static PassAnswer fromIValue(const c10::IValue& value);
};

// Tells a worker that a context is released; it releases its own copy and
// tells the workers it sent messages to in that context.
struct ReleaseContext {
  static constexpr const char* kHandler = "dist_autograd.release_context";

  int64_t context_id = 0;

  std::vector<c10::IValue> toArgs() const;
  static ReleaseContext fromArgs(const std::vector<c10::IValue>& args);
};

}  // namespace distgrad::autograd
