#include "rpc/wire.h"

#include "rpc/rref_pickling.h"

#include <ATen/ops/_validate_sparse_coo_tensor_args.h>
#include <ATen/ops/sparse_coo_tensor.h>
#include <c10/util/Exception.h>
#include <torch/csrc/jit/serialization/pickle.h>
#include <torch/custom_class.h>

#include <cstring>
#include <stdexcept>

namespace distgrad::rpc {

namespace {

constexpr const char* kCustomClassPrefix = "__torch__.torch.classes.";

// The wire form of a dense tensor: its data, detached, contiguous and with
// conjugate/negative views resolved.
at::Tensor wireDense(const at::Tensor& t) {
  at::Tensor data = t.detach();
  if (data.is_conj() || data.is_neg()) {
    data = data.resolve_conj().resolve_neg();
  }
  return data.is_contiguous() ? data : data.contiguous();
}

// Fills wire_tensors (and sparse) from tensors; see wire.h.
void prepareTensors(EncodedBody& encoded) {
  const auto& tensors = encoded.tensors;
  encoded.wire_tensors.reserve(tensors.size());
  std::vector<at::Tensor> indices;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    TORCH_CHECK_VALUE(t.defined(), "distgrad cannot send an undefined tensor");
    TORCH_CHECK_VALUE(!t.is_nested(), "distgrad cannot send nested tensors (send their components)");
    TORCH_CHECK_VALUE(t.device().is_cpu(), "distgrad sends CPU tensors only, got a tensor on ",
                      t.device());
    TORCH_CHECK_VALUE(t.layout() == c10::kStrided || t.layout() == c10::kSparse,
                      "distgrad sends dense and sparse COO tensors only, got layout ", t.layout());
    TORCH_CHECK_VALUE(!t.is_quantized(), "distgrad cannot send quantized tensors (dtype ",
                      t.scalar_type(), ")");
    if (t.layout() == c10::kStrided) {
      encoded.wire_tensors.push_back(wireDense(t));
      continue;
    }
    at::Tensor sparse = t.detach();
    encoded.wire_tensors.push_back(wireDense(sparse._values()));
    auto slot = static_cast<int64_t>(tensors.size() + indices.size());
    indices.push_back(wireDense(sparse._indices()));
    encoded.sparse.push_back(c10::ivalue::Tuple::create(
        {static_cast<int64_t>(i), slot, c10::IValue(sparse.sizes().vec()), sparse.is_coalesced()}));
  }
  for (auto& t : indices) {
    encoded.wire_tensors.push_back(std::move(t));
  }
}

// Rebuilds the sparse tensors described by table entries in tensors.
void restoreSparse(std::vector<at::Tensor>& tensors, const std::vector<c10::IValue>& sparse) {
  if (sparse.empty()) {
    return;
  }
  size_t num_body_tensors = tensors.size() - sparse.size();
  for (const auto& entry : sparse) {
    const auto& f = entry.toTupleRef().elements();
    if (f.size() != 4 || !f[0].isInt() || !f[1].isInt() || !f[2].isIntList() || !f[3].isBool()) {
      throw std::runtime_error("malformed sparse tensor description");
    }
    int64_t slot = f[0].toInt();
    int64_t indices_slot = f[1].toInt();
    if (slot < 0 || static_cast<size_t>(slot) >= num_body_tensors ||
        indices_slot < static_cast<int64_t>(num_body_tensors) ||
        static_cast<size_t>(indices_slot) >= tensors.size()) {
      throw std::runtime_error("malformed sparse tensor description");
    }
    std::vector<int64_t> sizes = f[2].toIntVector();
    // A peer's data: the indices must fit the sizes.
    at::_validate_sparse_coo_tensor_args(tensors[indices_slot], tensors[slot], sizes, f[3].toBool());
    tensors[slot] = at::sparse_coo_tensor(tensors[indices_slot], tensors[slot], sizes, {},
                                          f[3].toBool());
  }
  tensors.resize(num_body_tensors);
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
  prepareTensors(encoded);
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
  if (rref_states.empty() && body.sparse.empty()) {
    appendLength(message.meta, 0);
  } else {
    std::string table;
    appendPickle(table, c10::ivalue::Tuple::create({c10::ivalue::Tuple::create(rref_states),
                                                    c10::ivalue::Tuple::create(body.sparse)}));
    appendLength(message.meta, static_cast<uint32_t>(table.size()));
    message.meta += table;
  }
  appendPickle(message.meta, extension);
  message.tensors = body.wire_tensors;
  return message;
}

DecodedBody decodeBody(transport::Message& message, int src, RRefContext& rrefs) {
  const std::string& meta = message.meta;
  size_t pos = 0;
  uint32_t body_len = readLength(meta, pos, "body");
  size_t body_pos = pos;
  pos += body_len;
  uint32_t table_len = readLength(meta, pos, "out-of-band table");
  std::vector<c10::IValue> rref_states;
  std::vector<c10::IValue> sparse;
  if (table_len > 0) {
    c10::IValue table = torch::jit::unpickle(meta.data() + pos, table_len);
    if (!table.isTuple() || table.toTupleRef().size() != 2 ||
        !table.toTupleRef().elements()[0].isTuple() || !table.toTupleRef().elements()[1].isTuple()) {
      throw std::runtime_error("malformed out-of-band table");
    }
    const auto& states = table.toTupleRef().elements()[0].toTupleRef().elements();
    rref_states.assign(states.begin(), states.end());
    const auto& entries = table.toTupleRef().elements()[1].toTupleRef().elements();
    sparse.assign(entries.begin(), entries.end());
    pos += table_len;
  }
  DecodedBody decoded;
  decoded.extension = torch::jit::unpickle(meta.data() + pos, meta.size() - pos);
  // Adopted first, so that every RRef of the message is accounted for even
  // if the rest fails to decode.
  std::vector<RRefPtr> table = rrefs.adopt(rref_states, src);
  if (sparse.size() > message.tensors.size()) {
    throw std::runtime_error("malformed sparse tensor description");
  }
  restoreSparse(message.tensors, sparse);
  RRefUnpickleScope scope(table);
  decoded.body = torch::jit::unpickle(meta.data() + body_pos, body_len, &loadObject, &resolveClass,
                                      message.tensors);
  return decoded;
}

}  // namespace distgrad::rpc
