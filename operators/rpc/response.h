#pragma once

#include "rpc/rref_context.h"
#include "rpc/wire.h"
#include "transport/message.h"

#include <ATen/core/ivalue.h>

#include <exception>
#include <functional>
#include <optional>
#include <string>

namespace distgrad::rpc {

constexpr uint16_t kResponseType = transport::Message::kFirstUserType + 1;

// The outcome of a request: a value, or an error described by the type name
// of the exception, its message and the worker that first raised it.
struct Response {
  bool ok = true;
  c10::IValue value;
  std::string error_type;
  std::string error_message;
  std::string error_worker;
  c10::IValue extension;  // set by CallHooks; opaque to the rpc layer

  // The exception in eptr as RemoteError::describe gives it.
  static Response fromException(std::exception_ptr eptr, const std::string& worker);
  // The error as an exception to raise on the caller.
  std::exception_ptr toException() const;
};

// Encodes the response's body; see encodeRequestBody.
EncodedBody encodeResponseBody(const Response& response);

// Decodes a response from src, adopting its RRefs like decodeRequest.
// Throws std::runtime_error on malformed metadata.
Response decodeResponse(transport::Message& message, int src, RRefContext& rrefs);

}  // namespace distgrad::rpc
