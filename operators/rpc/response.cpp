#include "rpc/response.h"

#include "common/errors.h"
#include "rpc/wire.h"

#include <c10/util/Exception.h>
#include <c10/util/Type.h>

#include <stdexcept>

namespace distgrad::rpc {

namespace {

// Names the Python exception type the caller should raise for e (names of
// the table in python/distgrad/errors.py).
std::string pythonTypeName(const std::exception& e) {
  if (dynamic_cast<const DistTimeoutError*>(&e)) return "DistTimeoutError";
  if (dynamic_cast<const DistNetworkError*>(&e)) return "DistNetworkError";
  if (dynamic_cast<const DistError*>(&e)) return "DistError";
  if (dynamic_cast<const c10::ValueError*>(&e)) return "ValueError";
  if (dynamic_cast<const c10::TypeError*>(&e)) return "TypeError";
  if (dynamic_cast<const c10::IndexError*>(&e)) return "IndexError";
  if (dynamic_cast<const c10::NotImplementedError*>(&e)) return "NotImplementedError";
  if (dynamic_cast<const c10::LinAlgError*>(&e)) return "RuntimeError";
  if (dynamic_cast<const std::bad_alloc*>(&e)) return "MemoryError";
  return "RuntimeError";
}

ExceptionDescriber& exceptionDescriber() {
  static ExceptionDescriber describer;
  return describer;
}

}  // namespace

void setExceptionDescriber(ExceptionDescriber describer) {
  exceptionDescriber() = std::move(describer);
}

Response Response::fromException(std::exception_ptr eptr, const std::string& worker) {
  Response r;
  r.ok = false;
  try {
    std::rethrow_exception(eptr);
  } catch (const RemoteError& e) {
    r.error_type = e.typeName();
    r.error_message = e.message();
    r.error_worker = e.worker().empty() ? worker : e.worker();
  } catch (const c10::Error& e) {
    r.error_type = pythonTypeName(e);
    r.error_message = e.what_without_backtrace();
    r.error_worker = worker;
  } catch (const std::exception& e) {
    if (exceptionDescriber()) {
      if (auto described = exceptionDescriber()(e)) {
        r.error_type = described->first;
        r.error_message = described->second;
        r.error_worker = worker;
        return r;
      }
    }
    r.error_type = pythonTypeName(e);
    r.error_message = e.what();
    if (r.error_message == "std::exception") {
      r.error_message = c10::demangle(typeid(e).name());  // says more than what() here
    }
    r.error_worker = worker;
  } catch (...) {
    r.error_type = "RuntimeError";
    r.error_message = "unknown C++ exception";
    r.error_worker = worker;
  }
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
