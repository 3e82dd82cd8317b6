#pragma once

#include <exception>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

namespace distgrad {

// Failures of the distgrad runtime itself (not of user code). Each maps to a
// Python exception class of the same name in distgrad.errors.
class DistError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A peer is unreachable, has died, or has shut down.
class DistNetworkError : public DistError {
 public:
  using DistError::DistError;
};

// A call outlived its timeout.
class DistTimeoutError : public DistError {
 public:
  using DistError::DistError;
};

// An exception raised on another worker, carried back to the caller. type_name
// is the remote exception's type (a Python built-in exception name, a distgrad
// error name, or "RuntimeError"); worker names where it was first raised.
class RemoteError : public std::runtime_error {
 public:
  RemoteError(std::string type_name, std::string message, std::string worker)
      : std::runtime_error(format(type_name, message, worker)),
        type_name_(std::move(type_name)),
        message_(std::move(message)),
        worker_(std::move(worker)) {}

  // The exception in eptr as it travels: errors that came from another
  // worker keep that worker's name, others are attributed to worker.
  static RemoteError describe(std::exception_ptr eptr, const std::string& worker);

  const std::string& typeName() const { return type_name_; }
  const std::string& message() const { return message_; }
  const std::string& worker() const { return worker_; }

 private:
  static std::string format(const std::string& type_name, const std::string& message,
                            const std::string& worker) {
    return message + "\n(" + type_name + " raised on worker '" + worker + "')";
  }

  std::string type_name_;
  std::string message_;
  std::string worker_;
};

// Names exceptions the runtime cannot classify itself (Python exceptions
// carried through C++): returns (type name, message), or nothing to let the
// default apply. Set once by the Python bindings.
using ExceptionDescriber =
    std::function<std::optional<std::pair<std::string, std::string>>(const std::exception&)>;
void setExceptionDescriber(ExceptionDescriber describer);

}  // namespace distgrad
