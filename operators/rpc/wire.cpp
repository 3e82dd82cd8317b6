#include "rpc/wire.h"

#include "rpc/rref_pickling.h"

#include <c10/util/Exception.h>
#include <torch/csrc/jit/serialization/pickle.h>
#include <torch/custom_class.h>

#include <cstring>
#include <stdexcept>

namespace distgrad::rpc {

namespace {

constexpr const char* kCustomClassPrefix = "__torch__.torch.classes.";

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

void appendPickle(std::string& out, const c10::IValue& value) {
  torch::jit::pickle([&](const char* data, size_t len) { out.append(data, len); }, value, nullptr);
}

void appendLength(std::string& out, uint32_t len) {
  char bytes[sizeof(len)];
  std::memcpy(bytes, &len, sizeof(len));
  out.append(bytes, sizeof(len));
}

uint32_t readLength(const std::string& meta, size_t& pos, const char* what) {
  uint32_t len = 0;
  if (meta.size() - pos < sizeof(len)) {
    throw std::runtime_error(std::string("message metadata too short for its ") + what);
  }
  std::memcpy(&len, meta.data() + pos, sizeof(len));
  pos += sizeof(len);
  if (meta.size() - pos < len) {
    throw std::runtime_error(std::string("message ") + what + " length exceeds its metadata");
  }
  return len;
}

ClassResolver& classResolver() {
  static ClassResolver resolver;
  return resolver;
}

c10::StrongTypePtr resolveClass(const c10::QualifiedName& name) {
  const std::string& qualified = name.qualifiedName();
  if (qualified.rfind(kCustomClassPrefix, 0) == 0) {
    auto type = torch::getCustomClass(qualified);
    TORCH_CHECK(type != nullptr, "unknown custom class '", qualified, "' in an RPC message");
    return c10::StrongTypePtr(nullptr, type);
  }
  TORCH_CHECK(classResolver(), "cannot decode an object of class '", qualified,
              "' on this worker");
  return classResolver()(name);
}

// Builds an object from its pickled state: with the class's __setstate__
// (custom classes, TorchScript classes that define one), else from the
// dict of attributes the pickler writes.
c10::intrusive_ptr<c10::ivalue::Object> loadObject(const c10::StrongTypePtr& type,
                                                   c10::IValue state) {
  auto cls = type.type_->expect<c10::ClassType>();
  bool custom = cls->name()->qualifiedName().rfind(kCustomClassPrefix, 0) == 0;
  // A custom class object holds its C++ object in one slot.
  size_t slots = custom ? 1 : cls->numAttributes();
  auto object = c10::ivalue::Object::create(type, slots);
  if (auto* setstate = cls->findMethod("__setstate__")) {
    (*setstate)({object, std::move(state)});
    return object;
  }
  TORCH_CHECK(state.isGenericDict(), "malformed state of an object of class '",
              cls->name()->qualifiedName(), "' in an RPC message");
  for (const auto& item : state.toGenericDict()) {
    object->setAttr(item.key().toStringRef(), item.value());
  }
  return object;
}

}  // namespace

void setClassResolver(ClassResolver resolver) {
  classResolver() = std::move(resolver);
}

EncodedBody encodeBody(const c10::IValue& body) {
  EncodedBody encoded;
  {
    RRefPickleScope rrefs(&encoded.rrefs);
    torch::jit::pickle([&](const char* data, size_t len) { encoded.body.append(data, len); },
                       body, &encoded.tensors);
  }
  encoded.wire_tensors = wireTensors(encoded.tensors);
  return encoded;
}

transport::Message assembleMessage(uint16_t type, uint64_t id, const EncodedBody& body,
                                   const std::vector<c10::IValue>& rref_states,
                                   const c10::IValue& extension) {
  transport::Message message;
  message.type = type;
  message.id = id;
  message.meta.reserve(body.body.size() + 64);
  appendLength(message.meta, static_cast<uint32_t>(body.body.size()));
  message.meta += body.body;
  if (rref_states.empty()) {
    appendLength(message.meta, 0);
  } else {
    std::string table;
    appendPickle(table, c10::ivalue::Tuple::create(rref_states));
    appendLength(message.meta, static_cast<uint32_t>(table.size()));
    message.meta += table;
  }
  appendPickle(message.meta, extension);
  message.tensors = body.wire_tensors;
  return message;
}

SplitMeta splitMeta(const std::string& meta) {
  SplitMeta split;
  size_t pos = 0;
  uint32_t body_len = readLength(meta, pos, "body");
  split.body = meta.substr(pos, body_len);
  pos += body_len;
  uint32_t table_len = readLength(meta, pos, "RRef table");
  if (table_len > 0) {
    c10::IValue table = torch::jit::unpickle(meta.data() + pos, table_len);
    if (!table.isTuple()) {
      throw std::runtime_error("malformed RRef table");
    }
    const auto& states = table.toTupleRef().elements();
    split.rref_states.assign(states.begin(), states.end());
    pos += table_len;
  }
  split.extension = torch::jit::unpickle(meta.data() + pos, meta.size() - pos);
  return split;
}

c10::IValue unpickleBody(const std::string& body, const std::vector<at::Tensor>& tensors,
                         const std::vector<RRefPtr>& rrefs) {
  RRefUnpickleScope scope(rrefs);
  return torch::jit::unpickle(body.data(), body.size(), &loadObject, &resolveClass, tensors);
}

}  // namespace distgrad::rpc
