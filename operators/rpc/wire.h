#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/core/ivalue.h>

#include "transport/message.h"

#include <string>
#include <vector>

namespace distgrad::rpc {

// Shared pieces of the request and response encodings. A message's metadata
// is two pickles, the body (whose tensors become references into the
// message's tensor table) and the autograd extension (no tensors):
//
//   body_len u32 | body pickle | extension pickle

// A message body pickled, with the tensors it refers to: as given (so that
// hooks can record them for autograd) and as they will travel.
struct EncodedBody {
  std::string body;
  std::vector<at::Tensor> tensors;
  std::vector<at::Tensor> wire_tensors;
};

// Pickles body and prepares its tensors; throws c10::ValueError for tensors
// that cannot travel (not on the CPU, sparse).
EncodedBody encodeBody(const c10::IValue& body);

// The transport message for an encoded body and its extension.
transport::Message assembleMessage(uint16_t type, uint64_t id, const EncodedBody& body,
                                   const c10::IValue& extension);

// Splits metadata into the body pickle and the unpickled extension; throws
// std::runtime_error if it is malformed.
std::pair<std::string, c10::IValue> splitMeta(const std::string& meta);

// Unpickles a body whose tensor references point into tensors.
c10::IValue unpickleBody(const std::string& body, const std::vector<at::Tensor>& tensors);

}  // namespace distgrad::rpc
