#pragma once

#include "rpc/rref_context.h"
#include "rpc/wire.h"
#include "transport/message.h"

#include <ATen/core/ivalue.h>

#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace distgrad::rpc {

constexpr uint16_t kRequestType = transport::Message::kFirstUserType;

// What a request asks the callee to run.
enum class CallKind : int64_t {
  kBuiltin = 0,   // a dispatcher operator, target "aten::add" or "aten::add.Tensor"
  kScript = 1,    // a TorchScript function, target its qualified name
  kPython = 2,    // a pickled Python call; args are (payload, tensors...)
  kInternal = 3,  // a handler another distgrad layer registered, target its name
  kRRefFetch = 4,  // the value of an RRef owned by the callee; args (rref id)
};

using Kwargs = std::unordered_map<std::string, c10::IValue>;

struct Request {
  // A call of func by name: a builtin operator ("aten::add") if it has a
  // namespace, else a TorchScript function ("pkg.mod.fn", with or without
  // the "__torch__." prefix).
  static Request byName(const std::string& func, std::vector<c10::IValue> args);

  CallKind kind = CallKind::kBuiltin;
  std::string target;
  std::vector<c10::IValue> args;
  Kwargs kwargs;
  // Set for remote(): the callee keeps the result as this RRef's value and
  // answers None (or the error).
  std::optional<RemoteTarget> remote;
  c10::IValue extension;  // set by CallHooks; opaque to the rpc layer
};

// Encodes the request's body; the message is assembled with assembleMessage
// once hooks have computed the extension from the body's tensors.
EncodedBody encodeRequestBody(const Request& request);

// Decodes a request from src (see decodeBody: message.tensors becomes the
// request's tensor table, sparse tensors rebuilt; its RRefs are adopted).
// Throws std::runtime_error on malformed metadata.
Request decodeRequest(transport::Message& message, int src, RRefContext& rrefs);

}  // namespace distgrad::rpc
