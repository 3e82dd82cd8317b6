#include "transport/frame.h"

#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

#include <cstring>
#include <stdexcept>

namespace distgrad::transport {

namespace {

template <typename T>
void put(char*& out, T value) {
  std::memcpy(out, &value, sizeof(T));
  out += sizeof(T);
}

template <typename T>
T get(const char*& in) {
  T value;
  std::memcpy(&value, in, sizeof(T));
  in += sizeof(T);
  return value;
}

// Only plain numeric dtypes travel; quantized and bit-packed types do not.
bool isSupportedDtype(int8_t code) {
  if (code < 0 || code >= static_cast<int8_t>(c10::ScalarType::NumOptions)) {
    return false;
  }
  auto type = static_cast<c10::ScalarType>(code);
  return !c10::isQIntType(type) && !c10::isBitsType(type) && c10::elementSize(type) > 0;
}

}  // namespace

void FrameHeader::encode(char* out) const {
  put(out, magic);
  put(out, version);
  put(out, type);
  put(out, id);
  put(out, meta_len);
  put(out, desc_len);
  put(out, data_len);
}

FrameHeader FrameHeader::decode(const char* in) {
  FrameHeader h;
  h.magic = get<uint32_t>(in);
  h.version = get<uint16_t>(in);
  h.type = get<uint16_t>(in);
  h.id = get<uint64_t>(in);
  h.meta_len = get<uint32_t>(in);
  h.desc_len = get<uint32_t>(in);
  h.data_len = get<uint64_t>(in);
  return h;
}

void validateHeader(const FrameHeader& h, const FrameLimits& limits) {
  if (h.magic != FrameHeader::kMagic) {
    throw std::runtime_error("bad magic " + std::to_string(h.magic));
  }
  if (h.version != FrameHeader::kVersion) {
    throw std::runtime_error("unsupported protocol version " + std::to_string(h.version));
  }
  if (h.meta_len > limits.max_meta_bytes) {
    throw std::runtime_error("metadata length " + std::to_string(h.meta_len) +
                             " over the maximum " + std::to_string(limits.max_meta_bytes));
  }
  if (h.desc_len > FrameLimits::kMaxDescBytes) {
    throw std::runtime_error("tensor descriptor length " + std::to_string(h.desc_len) +
                             " over the maximum " + std::to_string(FrameLimits::kMaxDescBytes));
  }
  if (h.data_len > limits.max_data_bytes) {
    throw std::runtime_error("tensor data length " + std::to_string(h.data_len) +
                             " over the maximum " + std::to_string(limits.max_data_bytes));
  }
  if (h.desc_len == 0 && h.data_len != 0) {
    throw std::runtime_error("tensor data without tensor descriptors");
  }
}

std::string FrameLimits::encode() const {
  std::string bytes(kEncodedSize, '\0');
  std::memcpy(bytes.data(), &max_meta_bytes, sizeof(uint64_t));
  std::memcpy(bytes.data() + sizeof(uint64_t), &max_data_bytes, sizeof(uint64_t));
  return bytes;
}

FrameLimits FrameLimits::decode(const std::string& bytes) {
  if (bytes.size() < kEncodedSize) {
    throw std::runtime_error("malformed message limits");
  }
  FrameLimits limits;
  std::memcpy(&limits.max_meta_bytes, bytes.data(), sizeof(uint64_t));
  std::memcpy(&limits.max_data_bytes, bytes.data() + sizeof(uint64_t), sizeof(uint64_t));
  return limits;
}

void checkOutgoing(size_t meta_bytes, const std::vector<at::Tensor>& tensors,
                   const FrameLimits& limits) {
  uint64_t data = 0;
  uint64_t descriptors = sizeof(uint32_t);
  for (const auto& t : tensors) {
    TORCH_CHECK_VALUE(t.dim() <= FrameLimits::kMaxDims, "distgrad cannot send a tensor of ", t.dim(),
                      " dimensions (at most ", FrameLimits::kMaxDims, ")");
    TORCH_CHECK_VALUE(isSupportedDtype(static_cast<int8_t>(t.scalar_type())),
                      "distgrad cannot send tensors of dtype ", t.scalar_type());
    data += t.nbytes();
    descriptors += 3 + sizeof(uint64_t) + sizeof(int64_t) * t.dim();
  }
  if (descriptors > FrameLimits::kMaxDescBytes) {
    throw std::length_error("message of " + std::to_string(tensors.size()) +
                            " tensors has more tensor descriptors than the maximum of " +
                            std::to_string(FrameLimits::kMaxDescBytes) + " bytes");
  }
  if (meta_bytes > limits.max_meta_bytes || data > limits.max_data_bytes) {
    throw std::length_error("message of " + std::to_string(data + meta_bytes) +
                            " bytes is larger than the maximum it accepts, " +
                            std::to_string(limits.max_data_bytes) +
                            " (its DISTGRAD_MAX_MESSAGE_BYTES)");
  }
}

std::string encodeDescriptors(const std::vector<at::Tensor>& tensors,
                              const std::vector<TensorPlacement>& placements, uint64_t* data_len) {
  *data_len = 0;
  if (tensors.empty()) {
    return {};
  }
  size_t size = sizeof(uint32_t);
  for (const auto& t : tensors) {
    size += 3 + sizeof(uint64_t) + sizeof(int64_t) * t.dim();
  }
  std::string block(size, '\0');
  char* out = block.data();
  put(out, static_cast<uint32_t>(tensors.size()));
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    TORCH_CHECK(t.device().is_cpu() && t.is_contiguous(),
                "distgrad transport sends contiguous CPU tensors only");
    TORCH_CHECK(t.dim() <= FrameLimits::kMaxDims, "tensor has more than ",
                FrameLimits::kMaxDims, " dimensions");
    TORCH_CHECK(isSupportedDtype(static_cast<int8_t>(t.scalar_type())),
                "distgrad cannot send tensors of dtype ", t.scalar_type());
    TensorPlacement placement = i < placements.size() ? placements[i] : TensorPlacement();
    put(out, static_cast<int8_t>(t.scalar_type()));
    put(out, static_cast<uint8_t>(t.dim()));
    put(out, static_cast<uint8_t>(placement.location));
    if (placement.location != TensorLocation::kInline) {
      put(out, placement.offset);
    } else {
      *data_len += t.nbytes();
    }
    for (int64_t s : t.sizes()) {
      put(out, s);
    }
  }
  block.resize(out - block.data());
  return block;
}

DecodedTensors allocateFromDescriptors(const std::string& block, uint64_t data_len,
                                       const ArenaTensorFactory& arena_tensor) {
  DecodedTensors decoded;
  if (block.empty()) {
    return decoded;
  }
  const char* in = block.data();
  const char* end = in + block.size();
  auto need = [&](size_t n) {
    if (static_cast<size_t>(end - in) < n) {
      throw std::runtime_error("truncated tensor descriptors");
    }
  };
  need(sizeof(uint32_t));
  uint32_t count = get<uint32_t>(in);
  uint64_t inline_total = 0;
  for (uint32_t i = 0; i < count; ++i) {
    need(3);
    int8_t dtype = get<int8_t>(in);
    uint8_t ndim = get<uint8_t>(in);
    uint8_t location = get<uint8_t>(in);
    if (!isSupportedDtype(dtype)) {
      throw std::runtime_error("unsupported dtype code " + std::to_string(dtype));
    }
    if (ndim > FrameLimits::kMaxDims) {
      throw std::runtime_error("tensor with " + std::to_string(ndim) + " dimensions");
    }
    if (location > static_cast<uint8_t>(TensorLocation::kReceiverArena)) {
      throw std::runtime_error("unknown tensor location " + std::to_string(location));
    }
    uint64_t offset = 0;
    if (location != 0) {
      need(sizeof(uint64_t));
      offset = get<uint64_t>(in);
    }
    need(sizeof(int64_t) * ndim);
    std::vector<int64_t> sizes(ndim);
    uint64_t nbytes = c10::elementSize(static_cast<c10::ScalarType>(dtype));
    for (auto& s : sizes) {
      s = get<int64_t>(in);
      if (s < 0 || __builtin_mul_overflow(nbytes, static_cast<uint64_t>(s), &nbytes)) {
        throw std::runtime_error("invalid tensor sizes");
      }
    }
    auto type = static_cast<c10::ScalarType>(dtype);
    if (location != 0) {
      if (!arena_tensor) {
        throw std::runtime_error("tensor in shared memory on a connection without it");
      }
      decoded.tensors.push_back(
          arena_tensor(static_cast<TensorLocation>(location), offset, nbytes, sizes, type));
      decoded.inline_data.push_back(false);
      continue;
    }
    // Checked against data_len before anything is allocated.
    if (__builtin_add_overflow(inline_total, nbytes, &inline_total) || inline_total > data_len) {
      throw std::runtime_error("tensor sizes do not match the data length");
    }
    decoded.tensors.push_back(at::empty(sizes, at::TensorOptions().dtype(type)));
    decoded.inline_data.push_back(true);
  }
  if (in != end || inline_total != data_len) {
    throw std::runtime_error("tensor descriptors do not match the data length");
  }
  return decoded;
}

}  // namespace distgrad::transport
