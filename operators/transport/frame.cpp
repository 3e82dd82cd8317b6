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

void checkOutgoing(size_t meta_bytes, const std::vector<at::Tensor>& tensors,
                   const FrameLimits& limits) {
  uint64_t data = 0;
  for (const auto& t : tensors) {
    data += t.nbytes();
  }
  if (meta_bytes > limits.max_meta_bytes || data > limits.max_data_bytes) {
    throw std::length_error("message of " + std::to_string(data + meta_bytes) +
                            " bytes is larger than the maximum of " +
                            std::to_string(limits.max_data_bytes) +
                            " (DISTGRAD_MAX_MESSAGE_BYTES)");
  }
}

std::string encodeDescriptors(const std::vector<at::Tensor>& tensors, uint64_t* data_len) {
  *data_len = 0;
  if (tensors.empty()) {
    return {};
  }
  size_t size = sizeof(uint32_t);
  for (const auto& t : tensors) {
    size += 2 + sizeof(int64_t) * t.dim();
  }
  std::string block(size, '\0');
  char* out = block.data();
  put(out, static_cast<uint32_t>(tensors.size()));
  for (const auto& t : tensors) {
    TORCH_CHECK(t.device().is_cpu() && t.is_contiguous(),
                "distgrad transport sends contiguous CPU tensors only");
    TORCH_CHECK(t.dim() <= FrameLimits::kMaxDims, "tensor has more than ",
                FrameLimits::kMaxDims, " dimensions");
    TORCH_CHECK(isSupportedDtype(static_cast<int8_t>(t.scalar_type())),
                "distgrad cannot send tensors of dtype ", t.scalar_type());
    put(out, static_cast<int8_t>(t.scalar_type()));
    put(out, static_cast<uint8_t>(t.dim()));
    for (int64_t s : t.sizes()) {
      put(out, s);
    }
    *data_len += t.nbytes();
  }
  return block;
}

std::vector<at::Tensor> allocateFromDescriptors(const std::string& block, uint64_t data_len) {
  std::vector<at::Tensor> tensors;
  if (block.empty()) {
    return tensors;
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
  uint64_t total = 0;
  tensors.reserve(std::min<uint32_t>(count, 4096));
  for (uint32_t i = 0; i < count; ++i) {
    need(2);
    int8_t dtype = get<int8_t>(in);
    uint8_t ndim = get<uint8_t>(in);
    if (!isSupportedDtype(dtype)) {
      throw std::runtime_error("unsupported dtype code " + std::to_string(dtype));
    }
    if (ndim > FrameLimits::kMaxDims) {
      throw std::runtime_error("tensor with " + std::to_string(ndim) + " dimensions");
    }
    need(sizeof(int64_t) * ndim);
    std::vector<int64_t> sizes(ndim);
    uint64_t numel = 1;
    for (auto& s : sizes) {
      s = get<int64_t>(in);
      if (s < 0) {
        throw std::runtime_error("negative tensor size");
      }
      // Checked against data_len before anything is allocated.
      if (s != 0 && numel > data_len / static_cast<uint64_t>(s) + 1) {
        throw std::runtime_error("tensor sizes do not match the data length");
      }
      numel *= static_cast<uint64_t>(s);
    }
    total += numel * c10::elementSize(static_cast<c10::ScalarType>(dtype));
    if (total > data_len) {
      throw std::runtime_error("tensor sizes do not match the data length");
    }
    tensors.push_back(at::empty(sizes, at::TensorOptions().dtype(static_cast<c10::ScalarType>(dtype))));
  }
  if (in != end || total != data_len) {
    throw std::runtime_error("tensor descriptors do not match the data length");
  }
  return tensors;
}

}  // namespace distgrad::transport
