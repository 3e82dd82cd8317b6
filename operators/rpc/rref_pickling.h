#pragma once

#include "rpc/rref.h"

#include <unordered_map>
#include <vector>

namespace distgrad::rpc {

// RRefs travel out of band, like tensors: in a message body an RRef is
// pickled as its index in the message's RRef table (the __getstate__ and
// __setstate__ of torch.classes.dist_rpc.RRef call into these scopes), and
// the table itself travels as fork states (see RRefContext).
//
// Threading: both scopes are thread-local and cover the pickling or
// unpickling of one body on the current thread.

// While a body is pickled: collects the RRefs met into *table.
class RRefPickleScope {
 public:
  explicit RRefPickleScope(std::vector<RRefPtr>* table);
  ~RRefPickleScope();
  RRefPickleScope(const RRefPickleScope&) = delete;
  RRefPickleScope& operator=(const RRefPickleScope&) = delete;

  // The index of rref in the current table (the same RRef twice gets the
  // same index). Throws c10::Error outside an RPC message.
  static int64_t add(const RRefPtr& rref);

 private:
  std::vector<RRefPtr>* const table_;
  std::unordered_map<const RRef*, int64_t> indices_;
  RRefPickleScope* const previous_;
};

// While a body is unpickled: the RRefs its indices refer to.
class RRefUnpickleScope {
 public:
  explicit RRefUnpickleScope(const std::vector<RRefPtr>& table);
  ~RRefUnpickleScope();
  RRefUnpickleScope(const RRefUnpickleScope&) = delete;
  RRefUnpickleScope& operator=(const RRefUnpickleScope&) = delete;

  // Throws c10::Error for an index outside the table or outside a message.
  static RRefPtr at(int64_t index);

 private:
  const std::vector<RRefPtr>& table_;
  RRefUnpickleScope* const previous_;
};

}  // namespace distgrad::rpc
