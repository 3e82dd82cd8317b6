#include "rpc/response.h"

#include "common/errors.h"
#include "rpc/wire.h"

#include <stdexcept>

namespace distgrad::rpc {

Response Response::fromException(std::exception_ptr eptr, const std::string& worker) {
  RemoteError error = RemoteError::describe(std::move(eptr), worker);
  Response r;
  r.ok = false;
  r.error_type = error.typeName();
  r.error_message = error.message();
  r.error_worker = error.worker();
  return r;
}

std::exception_ptr Response::toException() const {
  return std::make_exception_ptr(RemoteError(error_type, error_message, error_worker));
}

EncodedBody encodeResponseBody(const Response& response) {
  c10::IValue body = response.ok
      ? c10::ivalue::Tuple::create({true, response.value})
      : c10::ivalue::Tuple::create(
            {false, response.error_type, response.error_message, response.error_worker});
  return encodeBody(body);
}

Response decodeResponse(transport::Message& message, int src, RRefContext& rrefs) {
  DecodedBody meta = decodeBody(message, src, rrefs);
  const c10::IValue& decoded = meta.body;
  if (!decoded.isTuple() || decoded.toTupleRef().elements().empty() ||
      !decoded.toTupleRef().elements()[0].isBool()) {
    throw std::runtime_error("malformed response body");
  }
  const auto& fields = decoded.toTupleRef().elements();
  Response r;
  r.ok = fields[0].toBool();
  if (r.ok && fields.size() == 2) {
    r.value = fields[1];
  } else if (!r.ok && fields.size() == 4 && fields[1].isString() && fields[2].isString() &&
             fields[3].isString()) {
    r.error_type = fields[1].toStringRef();
    r.error_message = fields[2].toStringRef();
    r.error_worker = fields[3].toStringRef();
  } else {
    throw std::runtime_error("malformed response body");
  }
  r.extension = std::move(meta.extension);
  return r;
}

}  // namespace distgrad::rpc
