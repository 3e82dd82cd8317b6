#include "common/errors.h"

#include <c10/util/Exception.h>
#include <c10/util/Type.h>

#include <typeinfo>

namespace distgrad {

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

RemoteError RemoteError::describe(std::exception_ptr eptr, const std::string& worker) {
  try {
    std::rethrow_exception(eptr);
  } catch (const RemoteError& e) {
    return RemoteError(e.typeName(), e.message(), e.worker().empty() ? worker : e.worker());
  } catch (const c10::Error& e) {
    return RemoteError(pythonTypeName(e), e.what_without_backtrace(), worker);
  } catch (const std::exception& e) {
    if (exceptionDescriber()) {
      if (auto described = exceptionDescriber()(e)) {
        return RemoteError(described->first, described->second, worker);
      }
    }
    std::string message = e.what();
    if (message == "std::exception") {
      message = c10::demangle(typeid(e).name());  // says more than what() here
    }
    return RemoteError(pythonTypeName(e), message, worker);
  } catch (...) {
    return RemoteError("RuntimeError", "unknown C++ exception", worker);
  }
}

}  // namespace distgrad
