#include "common/errors.h"
#include "python/bindings.h"
#include "rpc/response.h"

#include <torch/csrc/Exceptions.h>

namespace distgrad::python {

namespace py = pybind11;

namespace {

// What distgrad.errors provides, looked up once when _C is imported and kept
// for the life of the process: its classes, and the table of the names
// exceptions travel under (travelling_name, class_for_travelling_name),
// which Python calls use too.
struct Errors {
  PyObject* dist_error;
  PyObject* network_error;
  PyObject* timeout_error;
  PyObject* travelling_name;
  PyObject* class_for_travelling_name;
};

Errors& errors() {
  static Errors found = [] {
    py::module module = py::module::import("distgrad.errors");
    auto keep = [&](const char* name) { return py::object(module.attr(name)).release().ptr(); };
    return Errors{keep("DistError"), keep("DistNetworkError"), keep("DistTimeoutError"),
                  keep("travelling_name"), keep("class_for_travelling_name")};
  }();
  return found;
}

PyObject* classForRemote(const std::string& type_name) {
  py::object cls = py::reinterpret_borrow<py::object>(errors().class_for_travelling_name)(type_name);
  return cls.ptr();  // a class kept alive by its module
}

// Raises e as its class, built from the message alone; a class that cannot
// be built that way (UnicodeDecodeError takes five arguments) becomes a
// RuntimeError naming it.
void raiseRemote(const RemoteError& e) {
  PyObject* cls = classForRemote(e.typeName());
  PyObject* error = PyObject_CallFunction(cls, "s", e.what());
  if (error == nullptr) {
    PyErr_Clear();
    PyErr_SetString(PyExc_RuntimeError, (e.typeName() + ": " + e.what()).c_str());
    return;
  }
  PyErr_SetObject(cls, error);
  Py_DECREF(error);
}

}  // namespace

// Python exceptions raised inside C++ (for example by a Python autograd
// Function's backward during distributed backward) travel under the name
// distgrad.errors gives them.
std::optional<std::pair<std::string, std::string>> describePythonError(const std::exception& e) {
  const auto* error = dynamic_cast<const python_error*>(&e);
  if (!error || !error->type) {
    return std::nullopt;
  }
  py::gil_scoped_acquire gil;
  py::object name =
      py::reinterpret_borrow<py::object>(errors().travelling_name)(py::handle(error->type));
  if (name.is_none()) {
    return std::nullopt;
  }
  return std::make_pair(name.cast<std::string>(), std::string(error->what()));
}

void initErrorBindings(py::module& m) {
  errors();
  setExceptionDescriber(&describePythonError);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) {
        std::rethrow_exception(p);
      }
    } catch (const RemoteError& e) {
      raiseRemote(e);
    } catch (const DistTimeoutError& e) {
      PyErr_SetString(errors().timeout_error, e.what());
    } catch (const DistNetworkError& e) {
      PyErr_SetString(errors().network_error, e.what());
    } catch (const DistError& e) {
      PyErr_SetString(errors().dist_error, e.what());
    }
  });
}

}  // namespace distgrad::python
