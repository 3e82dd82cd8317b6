#include "autograd/rpc_recording.h"

#include "autograd/context_container.h"
#include "autograd/current_context.h"
#include "autograd/recv_rpc_backward.h"
#include "autograd/send_rpc_backward.h"
#include "common/errors.h"
#include "common/torch_private.h"

#include <c10/core/GradMode.h>

namespace distgrad::autograd {

namespace {

// Request extension: (context id, message id or -1, indices of the tensors
// recorded). Response extension: (message id, indices), or None.
// Only tuples, which travel without type tags.
constexpr int64_t kNoMessage = -1;

// Records a send node over the tensors that require grad; returns its
// message id (kNoMessage if none does) and their indices.
int64_t recordSend(Context& context, int dst, const std::vector<at::Tensor>& tensors,
                   std::vector<c10::IValue>& indices) {
  std::vector<at::Tensor> recorded;
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (tensors[i].requires_grad()) {
      indices.emplace_back(static_cast<int64_t>(i));
      recorded.push_back(tensors[i]);
    }
  }
  if (recorded.empty()) {
    return kNoMessage;
  }
  int64_t message_id = ContextContainer::get().newId();
  context.addSendNode(c10::make_intrusive<SendRpcBackward>(recorded, dst, message_id));
  return message_id;
}

void recordRecv(Context& context, int peer, int64_t message_id,
                const std::vector<at::Tensor>& tensors, const c10::IValue& indices) {
  auto node = c10::make_intrusive<RecvRpcBackward>(context.id(), peer, message_id);
  context.addRecvNode(node);
  for (const auto& index : indices.toTupleRef().elements()) {
    int64_t i = index.toInt();
    TORCH_CHECK(i >= 0 && i < static_cast<int64_t>(tensors.size()),
                "malformed autograd metadata in an RPC message");
    torch_private::set_history(tensors[i], node);
  }
}

// The caller had grad mode on (else it sends no context): so does the call.
class ContextScope : public rpc::CallScope {
 public:
  explicit ContextScope(std::shared_ptr<Context> context) : context_(std::move(context)) {}

  void run(const std::function<void()>& fn) override {
    CurrentContextGuard current(context_->id());
    c10::AutoGradMode grad_mode(true);
    fn();
  }

  c10::IValue onSendResponse(int dst, const std::vector<at::Tensor>& tensors) override {
    std::vector<c10::IValue> indices;
    int64_t message_id = recordSend(*context_, dst, tensors, indices);
    if (message_id == kNoMessage) {
      return c10::IValue();
    }
    return c10::ivalue::Tuple::create({message_id, c10::ivalue::Tuple::create(std::move(indices))});
  }

 private:
  const std::shared_ptr<Context> context_;
};

}  // namespace

c10::IValue RpcRecording::onSendRequest(int dst, const std::vector<at::Tensor>& tensors) {
  int64_t context_id = currentContextId();
  // Under no_grad nothing is recorded and the callee is not involved in the
  // context at all.
  if (context_id == kNoContext || !c10::GradMode::is_enabled()) {
    return c10::IValue();
  }
  auto context = ContextContainer::get().retrieveOrNull(context_id);
  if (!context) {
    throw DistError("the distributed autograd context " + std::to_string(context_id) +
                    " current on this thread has already been released");
  }
  context->addKnownWorker(dst);
  std::vector<c10::IValue> indices;
  int64_t message_id = recordSend(*context, dst, tensors, indices);
  return c10::ivalue::Tuple::create({context_id, message_id, c10::ivalue::Tuple::create(std::move(indices))});
}

std::shared_ptr<rpc::CallScope> RpcRecording::onReceiveRequest(
    int src, const c10::IValue& extension, const std::vector<at::Tensor>& tensors) {
  if (extension.isNone()) {
    return nullptr;
  }
  const auto& fields = extension.toTupleRef().elements();
  int64_t context_id = fields.at(0).toInt();
  int64_t message_id = fields.at(1).toInt();
  auto context = ContextContainer::get().retrieveOrCreate(context_id);
  if (message_id != kNoMessage) {
    recordRecv(*context, src, message_id, tensors, fields.at(2));
  }
  return std::make_shared<ContextScope>(std::move(context));
}

void RpcRecording::onReceiveResponse(int src, const c10::IValue& request_extension,
                                     const c10::IValue& response_extension,
                                     const std::vector<at::Tensor>& tensors) {
  if (response_extension.isNone()) {
    return;
  }
  int64_t context_id = request_extension.toTupleRef().elements().at(0).toInt();
  const auto& fields = response_extension.toTupleRef().elements();
  if (auto context = ContextContainer::get().retrieveOrNull(context_id)) {
    recordRecv(*context, src, fields.at(0).toInt(), tensors, fields.at(1));
  }
}

}  // namespace distgrad::autograd
