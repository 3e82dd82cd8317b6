#pragma once

#include "rpc/call_hooks.h"

namespace distgrad::autograd {

// Records RPCs in distributed autograd contexts.
//
// A request made while a context is current and grad mode is on carries the
// context id; the callee retrieves or creates the context and runs the call
// with it current (and grad mode on). Under no_grad the request carries no
// context and nothing is recorded. If some of the message's tensors require
// grad, the sender records a SendRpcBackward over them under
// a fresh message id and the receiver makes a RecvRpcBackward the grad_fn of
// the received copies. Responses are recorded the same way in reverse.
class RpcRecording : public rpc::CallHooks {
 public:
  c10::IValue onSendRequest(int dst, const std::vector<at::Tensor>& tensors) override;
  std::shared_ptr<rpc::CallScope> onReceiveRequest(int src, const c10::IValue& extension,
                                                   const std::vector<at::Tensor>& tensors) override;
  void onReceiveResponse(int src, const c10::IValue& request_extension,
                         const c10::IValue& response_extension,
                         const std::vector<at::Tensor>& tensors) override;
};

}  // namespace distgrad::autograd
