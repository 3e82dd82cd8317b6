#pragma once

#include <ATen/core/Tensor.h>

#include <cstddef>
#include <vector>

namespace distgrad::rpc {

// How much work a transport reader thread may do itself instead of handing
// it to the pool (a thread hop costs as much as a loopback round trip): only
// bounded builtin work on inputs of at most this many bytes.
constexpr size_t kMaxReaderInputBytes = 64 * 1024;

// The bytes of tensors' data (values and indices of sparse ones; undefined
// tensors count nothing).
inline size_t tensorBytes(const std::vector<at::Tensor>& tensors) {
  size_t bytes = 0;
  for (const auto& t : tensors) {
    if (t.defined()) {
      bytes += t.is_sparse() ? t._values().nbytes() + t._indices().nbytes() : t.nbytes();
    }
  }
  return bytes;
}

}  // namespace distgrad::rpc
