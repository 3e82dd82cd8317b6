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
  // Only tuples: generic lists and dicts would carry type tags the callee
  // has to parse.
  std::vector<c10::IValue> names;
  std::vector<c10::IValue> values;
  for (const auto& [name, value] : request.kwargs) {
    names.emplace_back(name);
    values.push_back(value);
  }
  c10::IValue remote;
  if (request.remote) {
    remote = c10::ivalue::Tuple::create({request.remote->rref_id, request.remote->fork_id});
  }
  auto body = c10::ivalue::Tuple::create(
      {static_cast<int64_t>(request.kind), request.target, c10::ivalue::Tuple::create(request.args),
       c10::ivalue::Tuple::create(std::move(names)), c10::ivalue::Tuple::create(std::move(values)),
       std::move(remote)});
  return encodeBody(body);
}

Request decodeRequest(transport::Message& message, int src, RRefContext& rrefs) {
  DecodedBody meta = decodeBody(message, src, rrefs);
  const c10::IValue& decoded = meta.body;
  if (!decoded.isTuple() || decoded.toTupleRef().elements().size() != 6) {
    throw std::runtime_error("malformed request body");
  }
  const auto& fields = decoded.toTupleRef().elements();
  if (!fields[0].isInt() || !fields[1].isString() || !fields[2].isTuple() ||
      !fields[3].isTuple() || !fields[4].isTuple() ||
      fields[3].toTupleRef().size() != fields[4].toTupleRef().size()) {
    throw std::runtime_error("malformed request body");
  }
  Request request;
  if (!fields[5].isNone()) {
    const auto& remote = fields[5];
    if (!remote.isTuple() || remote.toTupleRef().size() != 2 ||
        !remote.toTupleRef().elements()[0].isInt() || !remote.toTupleRef().elements()[1].isInt()) {
      throw std::runtime_error("malformed remote() target");
    }
    request.remote = RemoteTarget{remote.toTupleRef().elements()[0].toInt(),
                                  remote.toTupleRef().elements()[1].toInt()};
  }
  int64_t kind = fields[0].toInt();
  if (kind < 0 || kind > static_cast<int64_t>(CallKind::kRRefFetch)) {
    throw std::runtime_error("unknown request kind " + std::to_string(kind));
  }
  request.kind = static_cast<CallKind>(kind);
  request.target = fields[1].toStringRef();
  const auto& args = fields[2].toTupleRef().elements();
  request.args.assign(args.begin(), args.end());
  const auto& names = fields[3].toTupleRef().elements();
  const auto& values = fields[4].toTupleRef().elements();
  for (size_t i = 0; i < names.size(); ++i) {
    if (!names[i].isString()) {
      throw std::runtime_error("malformed request keyword arguments");
    }
    request.kwargs.emplace(names[i].toStringRef(), values[i]);
  }
  request.extension = std::move(meta.extension);
  return request;
}

}  // namespace distgrad::rpc
