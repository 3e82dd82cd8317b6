#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/core/ivalue.h>

#include "rpc/rref.h"
#include "transport/message.h"

#include <functional>
#include <string>
#include <vector>

namespace distgrad::rpc {

// Shared pieces of the request and response encodings. A message's metadata
// is the body pickle (whose tensors become references into the message's
// tensor table and whose RRefs become indices into its RRef table), the RRef
// table (fork states, see RRefContext) and the autograd extension (no
// tensors):
//
//   body_len u32 | body pickle | table_len u32 | table pickle | extension pickle
//
// table_len is 0, with no pickle, when the body holds no RRef.

// A message body pickled, with the tensors it refers to (as given, so that
// hooks can record them for autograd, and as they will travel) and the RRefs
// it refers to.
struct EncodedBody {
  std::string body;
  std::vector<at::Tensor> tensors;
  std::vector<at::Tensor> wire_tensors;
  std::vector<RRefPtr> rrefs;
};

// Pickles body and prepares its tensors; throws c10::ValueError for tensors
// that cannot travel (not on the CPU, sparse).
EncodedBody encodeBody(const c10::IValue& body);

// The transport message for an encoded body, the fork states of its RRefs
// and its extension.
transport::Message assembleMessage(uint16_t type, uint64_t id, const EncodedBody& body,
                                   const std::vector<c10::IValue>& rref_states,
                                   const c10::IValue& extension);

struct SplitMeta {
  std::string body;
  std::vector<c10::IValue> rref_states;
  c10::IValue extension;
};

// Splits metadata into the body pickle, the RRef table and the unpickled
// extension; throws std::runtime_error if it is malformed.
SplitMeta splitMeta(const std::string& meta);

// Unpickles a body whose tensor and RRef references point into tensors and
// rrefs. Objects of TorchScript classes are found with the class resolver.
c10::IValue unpickleBody(const std::string& body, const std::vector<at::Tensor>& tensors,
                         const std::vector<RRefPtr>& rrefs);

// Finds a TorchScript class by qualified name (custom classes are found
// without it). Set once by the Python bindings.
using ClassResolver = std::function<c10::StrongTypePtr(const c10::QualifiedName&)>;
void setClassResolver(ClassResolver resolver);

}  // namespace distgrad::rpc
