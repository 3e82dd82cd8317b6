#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/core/ivalue.h>

#include "rpc/rref.h"
#include "rpc/rref_context.h"
#include "transport/message.h"

#include <functional>
#include <string>
#include <vector>

namespace distgrad::rpc {

// Shared pieces of the request and response encodings. A message's metadata
// is the body pickle (whose tensors become references into the message's
// tensor table and whose RRefs become indices into its RRef table), the
// out-of-band table, and the autograd extension (no tensors):
//
//   body_len u32 | body pickle | table_len u32 | table pickle | extension pickle
//
// The table is (RRef fork states, sparse tensors); table_len is 0, with no
// pickle, when the body holds neither. A sparse COO tensor travels as its
// values (in its own slot of the tensor table) and its indices (in a slot
// appended after the body's tensors), described in the table by
// (slot, indices slot, sizes, coalesced).

// A message body pickled, with the tensors it refers to (as given, so that
// hooks can record them for autograd, and as they will travel) and the RRefs
// it refers to.
struct EncodedBody {
  std::string body;
  std::vector<at::Tensor> tensors;
  std::vector<at::Tensor> wire_tensors;
  std::vector<RRefPtr> rrefs;
  std::vector<c10::IValue> sparse;
};

// Pickles body and prepares its tensors; throws c10::ValueError for tensors
// that cannot travel (not on the CPU, quantized, a sparse layout other than
// COO).
EncodedBody encodeBody(const c10::IValue& body);

// The transport message for an encoded body, the fork states of its RRefs
// and its extension.
transport::Message assembleMessage(uint16_t type, uint64_t id, const EncodedBody& body,
                                   const std::vector<c10::IValue>& rref_states,
                                   const c10::IValue& extension);

struct DecodedBody {
  c10::IValue body;
  c10::IValue extension;
};

// Decodes the metadata of a message from src: rebuilds its sparse tensors in
// message.tensors (which then is the body's tensor table), adopts its RRefs
// with rrefs (all of them, before anything else can fail; see
// RRefContext::adopt), and unpickles the body. Objects of TorchScript
// classes are found with the class resolver. Throws std::runtime_error on
// malformed metadata.
DecodedBody decodeBody(transport::Message& message, int src, RRefContext& rrefs);

// Finds a TorchScript class by qualified name (custom classes are found
// without it). Set once by the Python bindings.
using ClassResolver = std::function<c10::StrongTypePtr(const c10::QualifiedName&)>;
void setClassResolver(ClassResolver resolver);

}  // namespace distgrad::rpc
