#include "rpc/wire.h"

#include <c10/util/Exception.h>
#include <torch/csrc/jit/serialization/pickle.h>

#include <cstring>
#include <stdexcept>

namespace distgrad::rpc {

namespace {

// What goes on the wire for each tensor: its data, detached, contiguous and
// with conjugate/negative views resolved.
std::vector<at::Tensor> wireTensors(const std::vector<at::Tensor>& tensors) {
  std::vector<at::Tensor> out;
  out.reserve(tensors.size());
  for (const auto& t : tensors) {
    TORCH_CHECK_VALUE(t.defined(), "distgrad cannot send an undefined tensor");
    TORCH_CHECK_VALUE(t.device().is_cpu(), "distgrad sends CPU tensors only, got a tensor on ",
                      t.device());
    TORCH_CHECK_VALUE(t.layout() == c10::kStrided, "distgrad sends dense tensors only, got ",
                      t.layout());
    TORCH_CHECK_VALUE(!t.is_quantized(), "distgrad cannot send quantized tensors (dtype ",
                      t.scalar_type(), ")");
    at::Tensor data = t.detach();
    if (data.is_conj() || data.is_neg()) {
      data = data.resolve_conj().resolve_neg();
    }
    out.push_back(data.is_contiguous() ? data : data.contiguous());
  }
  return out;
}

}  // namespace

EncodedBody encodeBody(const c10::IValue& body) {
  EncodedBody encoded;
  torch::jit::pickle([&](const char* data, size_t len) { encoded.body.append(data, len); }, body,
                     &encoded.tensors);
  encoded.wire_tensors = wireTensors(encoded.tensors);
  return encoded;
}

transport::Message assembleMessage(uint16_t type, uint64_t id, const EncodedBody& body,
                                   const c10::IValue& extension) {
  transport::Message message;
  message.type = type;
  message.id = id;
  message.meta.resize(sizeof(uint32_t));
  auto body_len = static_cast<uint32_t>(body.body.size());
  std::memcpy(message.meta.data(), &body_len, sizeof(body_len));
  message.meta += body.body;
  torch::jit::pickle([&](const char* data, size_t len) { message.meta.append(data, len); },
                     extension, nullptr);
  message.tensors = body.wire_tensors;
  return message;
}

std::pair<std::string, c10::IValue> splitMeta(const std::string& meta) {
  uint32_t body_len = 0;
  if (meta.size() < sizeof(body_len)) {
    throw std::runtime_error("message metadata too short");
  }
  std::memcpy(&body_len, meta.data(), sizeof(body_len));
  if (meta.size() - sizeof(body_len) < body_len) {
    throw std::runtime_error("message body length exceeds its metadata");
  }
  std::string body = meta.substr(sizeof(body_len), body_len);
  size_t ext_start = sizeof(body_len) + body_len;
  c10::IValue extension = torch::jit::unpickle(meta.data() + ext_start, meta.size() - ext_start);
  return {std::move(body), std::move(extension)};
}

c10::IValue unpickleBody(const std::string& body, const std::vector<at::Tensor>& tensors) {
  return torch::jit::unpickle(body.data(), body.size(), nullptr, tensors);
}

}  // namespace distgrad::rpc
