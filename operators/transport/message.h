#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

namespace distgrad::transport {

// What crosses a connection: an opaque type tag and id for the layer above,
// a metadata blob, and tensors whose bytes travel raw after it. Types below
// kFirstUserType are the transport's own control frames.
struct Message {
  static constexpr uint16_t kFirstUserType = 16;

  uint16_t type = 0;
  uint64_t id = 0;
  std::string meta;
  // Contiguous CPU tensors; their bytes are written from their own storage.
  std::vector<at::Tensor> tensors;
};

}  // namespace distgrad::transport
