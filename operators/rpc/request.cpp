#include "rpc/request.h"

#include "rpc/wire.h"

#include <stdexcept>

namespace distgrad::rpc {

Request Request::byName(const std::string& func, std::vector<c10::IValue> args) {
  static const std::string kScriptPrefix = "__torch__.";
  Request request;
  bool builtin = func.find("::") != std::string::npos;
  request.kind = builtin ? CallKind::kBuiltin : CallKind::kScript;
  request.target = builtin || func.rfind(kScriptPrefix, 0) == 0 ? func : kScriptPrefix + func;
  request.args = std::move(args);
  return request;
}

EncodedBody encodeRequestBody(const Request& request) {
  c10::impl::GenericDict kwargs(c10::StringType::get(), c10::AnyType::get());
  for (const auto& [name, value] : request.kwargs) {
    kwargs.insert(name, value);
  }
  c10::impl::GenericList args(c10::AnyType::get());
  args.reserve(request.args.size());
  for (const auto& a : request.args) {
    args.push_back(a);
  }
  auto body = c10::ivalue::Tuple::create(
      {static_cast<int64_t>(request.kind), request.target, std::move(args), std::move(kwargs)});
  return encodeBody(body);
}

Request decodeRequest(const transport::Message& message) {
  auto [body, extension] = splitMeta(message.meta);
  c10::IValue decoded = unpickleBody(body, message.tensors);
  if (!decoded.isTuple() || decoded.toTupleRef().elements().size() != 4) {
    throw std::runtime_error("malformed request body");
  }
  const auto& fields = decoded.toTupleRef().elements();
  if (!fields[0].isInt() || !fields[1].isString() || !fields[2].isList() ||
      !fields[3].isGenericDict()) {
    throw std::runtime_error("malformed request body");
  }
  Request request;
  int64_t kind = fields[0].toInt();
  if (kind < 0 || kind > static_cast<int64_t>(CallKind::kInternal)) {
    throw std::runtime_error("unknown request kind " + std::to_string(kind));
  }
  request.kind = static_cast<CallKind>(kind);
  request.target = fields[1].toStringRef();
  for (const auto& a : fields[2].toListRef()) {
    request.args.push_back(a);
  }
  for (const auto& entry : fields[3].toGenericDict()) {
    if (!entry.key().isString()) {
      throw std::runtime_error("malformed request keyword arguments");
    }
    request.kwargs.emplace(entry.key().toStringRef(), entry.value());
  }
  request.extension = std::move(extension);
  return request;
}

}  // namespace distgrad::rpc
