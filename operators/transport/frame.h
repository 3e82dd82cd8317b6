#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace distgrad::transport {

// Wire layout of one frame (all integers little-endian):
//
//   header (32 bytes): magic u32 | version u16 | type u16 | id u64 |
//                      meta_len u32 | desc_len u32 | data_len u64
//   meta (meta_len bytes)
//   tensor descriptors (desc_len bytes): count u32, then per tensor
//                      dtype u8 | ndim u8 | location u8 (TensorLocation) |
//                      [arena offset u64, unless inline] | sizes i64[ndim]
//   tensor data (data_len bytes): each inline tensor's bytes, in order
struct FrameHeader {
  static constexpr uint32_t kMagic = 0x44524744;  // "DGRD"
  static constexpr uint16_t kVersion = 2;
  static constexpr size_t kSize = 32;

  uint32_t magic = kMagic;
  uint16_t version = kVersion;
  uint16_t type = 0;
  uint64_t id = 0;
  uint32_t meta_len = 0;
  uint32_t desc_len = 0;
  uint64_t data_len = 0;

  void encode(char* out) const;
  static FrameHeader decode(const char* in);
};

// Upper bounds a receiver enforces before allocating anything.
struct FrameLimits {
  uint64_t max_meta_bytes = 64ull << 20;
  uint64_t max_data_bytes = 16ull << 30;
  static constexpr uint64_t kMaxDescBytes = 1ull << 20;
  static constexpr int kMaxDims = 64;

  // Each side of a connection tells the other its limits in the handshake.
  static constexpr size_t kEncodedSize = 2 * sizeof(uint64_t);
  std::string encode() const;
  // Throws std::runtime_error unless bytes starts with encoded limits.
  static FrameLimits decode(const std::string& bytes);
};

// Throws std::runtime_error naming the first inconsistency (magic, version,
// a length over its limit).
void validateHeader(const FrameHeader& header, const FrameLimits& limits);

// Throws std::length_error if a message with this much metadata and these
// tensors is larger than a receiver with these limits (its own, learnt in the
// handshake) accepts, so that a sender fails the one call instead of getting
// its connection dropped.
void checkOutgoing(size_t meta_bytes, const std::vector<at::Tensor>& tensors,
                   const FrameLimits& limits);

// Where a tensor's bytes travel (see shared_arena.h): inline after the
// frame's metadata, in the sender's shared memory arena, or, for a view of
// the receiver's arena sent back to it, in the receiver's own arena.
enum class TensorLocation : uint8_t { kInline = 0, kSenderArena = 1, kReceiverArena = 2 };

struct TensorPlacement {
  TensorLocation location = TensorLocation::kInline;
  uint64_t offset = 0;  // in the arena, unless inline
};

// Encodes the descriptor block for tensors (all contiguous, on CPU);
// placements is empty (all inline) or has one entry per tensor. Returns the
// number of inline data bytes in data_len.
std::string encodeDescriptors(const std::vector<at::Tensor>& tensors,
                              const std::vector<TensorPlacement>& placements, uint64_t* data_len);

// Makes the tensor a descriptor places in an arena, or throws
// std::runtime_error if offset and nbytes do not fit there.
using ArenaTensorFactory =
    std::function<at::Tensor(TensorLocation location, uint64_t offset, uint64_t nbytes,
                             c10::IntArrayRef sizes, c10::ScalarType dtype)>;

struct DecodedTensors {
  std::vector<at::Tensor> tensors;
  std::vector<bool> inline_data;  // whether each tensor's bytes follow in the frame
};

// Allocates one empty tensor per inline descriptor and asks arena_tensor for
// the others. Throws std::runtime_error when the block is malformed or the
// inline tensors' sizes do not add up to data_len.
DecodedTensors allocateFromDescriptors(const std::string& block, uint64_t data_len,
                                       const ArenaTensorFactory& arena_tensor);

}  // namespace distgrad::transport
