#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/core/ivalue.h>

#include <functional>
#include <memory>
#include <vector>

namespace distgrad::rpc {

// The state a request runs in on the callee (for distributed autograd: the
// context and grad mode the caller had), created by CallHooks.
class CallScope {
 public:
  virtual ~CallScope() = default;

  // Runs fn on the calling thread with the scope's thread-local state in
  // place, and restores the previous state afterwards.
  virtual void run(const std::function<void()>& fn) = 0;

  // Called before the response to this request is sent, with the response's
  // tensors; returns the extension that travels with the response.
  virtual c10::IValue onSendResponse(int dst, const std::vector<at::Tensor>& tensors) = 0;
};

// Lets a layer above rpc (distributed autograd) observe user calls without
// rpc knowing about it. Internal requests (CallKind::kInternal) do not pass
// through the hooks. Every method may be called from any thread, concurrently;
// an exception thrown by a hook fails that call (on the caller, the call
// raises it; on the callee, it becomes the error response).
class CallHooks {
 public:
  virtual ~CallHooks() = default;

  // On the caller's thread, before a request to dst is sent. tensors are the
  // request's original tensors. Returns the request's extension.
  virtual c10::IValue onSendRequest(int dst, const std::vector<at::Tensor>& tensors) = 0;

  // On the callee, on the reader thread, when a request from src has been
  // decoded and before it runs. tensors are the received tensors. Returns the scope
  // the call runs in, or null if the request carries nothing to set up.
  virtual std::shared_ptr<CallScope> onReceiveRequest(int src, const c10::IValue& extension,
                                                      const std::vector<at::Tensor>& tensors) = 0;

  // On the caller, when the response from src arrives, before the call's
  // future completes. request_extension is what onSendRequest returned.
  virtual void onReceiveResponse(int src, const c10::IValue& request_extension,
                                 const c10::IValue& response_extension,
                                 const std::vector<at::Tensor>& tensors) = 0;
};

}  // namespace distgrad::rpc
