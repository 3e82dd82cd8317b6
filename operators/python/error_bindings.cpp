#include "common/errors.h"
#include "python/bindings.h"
#include "rpc/response.h"

#include <torch/csrc/Exceptions.h>

namespace distgrad::python {

namespace py = pybind11;

namespace {

// Python classes distgrad.errors.*, looked up once when _C is imported and
// kept for the life of the process.
struct ErrorClasses {
  PyObject* dist_error;
  PyObject* network_error;
  PyObject* timeout_error;
};

ErrorClasses& errorClasses() {
  static ErrorClasses classes = [] {
    py::module errors = py::module::import("distgrad.errors");
    return ErrorClasses{py::object(errors.attr("DistError")).release().ptr(),
                        py::object(errors.attr("DistNetworkError")).release().ptr(),
                        py::object(errors.attr("DistTimeoutError")).release().ptr()};
  }();
  return classes;
}

// The class a remote error is raised as: a distgrad error, a Python built-in
// exception of that name, or RuntimeError.
PyObject* classForRemote(const std::string& type_name) {
  auto& classes = errorClasses();
  if (type_name == "DistError") return classes.dist_error;
  if (type_name == "DistNetworkError") return classes.network_error;
  if (type_name == "DistTimeoutError") return classes.timeout_error;
  py::module builtins = py::module::import("builtins");
  if (py::hasattr(builtins, type_name.c_str())) {
    py::object cls = builtins.attr(type_name.c_str());
    // Exception subclasses only: a SystemExit or KeyboardInterrupt raised
    // on another worker must not end or interrupt this one.
    if (PyType_Check(cls.ptr()) && PyType_IsSubtype(reinterpret_cast<PyTypeObject*>(cls.ptr()),
                                                    reinterpret_cast<PyTypeObject*>(PyExc_Exception))) {
      return cls.ptr();  // builtins keeps it alive
    }
  }
  return PyExc_RuntimeError;
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
// Function's backward during distributed backward) keep their type name
// when they travel to another worker, if it is a built-in one.
std::optional<std::pair<std::string, std::string>> describePythonError(const std::exception& e) {
  const auto* error = dynamic_cast<const python_error*>(&e);
  if (!error || !error->type) {
    return std::nullopt;
  }
  py::gil_scoped_acquire gil;
  py::handle type(error->type);
  if (py::str(type.attr("__module__")).cast<std::string>() != "builtins") {
    return std::nullopt;
  }
  return std::make_pair(py::str(type.attr("__name__")).cast<std::string>(),
                        std::string(error->what()));
}

void initErrorBindings(py::module& m) {
  errorClasses();
  rpc::setExceptionDescriber(&describePythonError);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) {
        std::rethrow_exception(p);
      }
    } catch (const RemoteError& e) {
      raiseRemote(e);
    } catch (const DistTimeoutError& e) {
      PyErr_SetString(errorClasses().timeout_error, e.what());
    } catch (const DistNetworkError& e) {
      PyErr_SetString(errorClasses().network_error, e.what());
    } catch (const DistError& e) {
      PyErr_SetString(errorClasses().dist_error, e.what());
    }
  });
}

}  // namespace distgrad::python
