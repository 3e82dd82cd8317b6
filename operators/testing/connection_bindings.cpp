#include "testing/unit_bindings.h"

#include "transport/connection.h"

#include <unistd.h>

#include <memory>

namespace distgrad::testing {

namespace py = pybind11;
using transport::Connection;
using transport::FrameLimits;
using transport::Message;

namespace {

Message messageOf(uint16_t type, uint64_t id, const std::string& meta,
                  std::vector<at::Tensor> tensors) {
  Message message;
  message.type = type;
  message.id = id;
  message.meta = meta;
  message.tensors = std::move(tensors);
  return message;
}

}  // namespace

void initConnectionBindings(py::module& m) {
  // A Connection over a duplicate of fd (a socketpair end: no network).
  // Blocking calls release the GIL, so a test can block one in a thread.
  py::class_<Connection, std::shared_ptr<Connection>>(m, "Connection")
      .def(py::init([](int fd) { return std::make_shared<Connection>(::dup(fd), "socketpair"); }),
           py::arg("fd"))
      .def(
          "send",
          [](Connection& c, uint16_t type, uint64_t id, const std::string& meta,
             std::vector<at::Tensor> tensors) { c.send(messageOf(type, id, meta, std::move(tensors))); },
          py::arg("type"), py::arg("id"), py::arg("meta"),
          py::arg("tensors") = std::vector<at::Tensor>(), py::call_guard<py::gil_scoped_release>())
      .def(
          "try_send",
          [](Connection& c, uint16_t type, uint64_t id, const std::string& meta,
             std::vector<at::Tensor> tensors) {
            return c.trySend(messageOf(type, id, meta, std::move(tensors)));
          },
          py::arg("type"), py::arg("id"), py::arg("meta"),
          py::arg("tensors") = std::vector<at::Tensor>(), py::call_guard<py::gil_scoped_release>())
      // Returns (type, id, meta bytes, tensors), or None at the end of the stream.
      .def("receive",
           [](Connection& c) -> py::object {
             Message message;
             bool got;
             {
               py::gil_scoped_release no_gil;
               got = c.receive(message, FrameLimits());
             }
             if (!got) {
               return py::none();
             }
             return py::make_tuple(message.type, message.id, py::bytes(message.meta),
                                   message.tensors);
           })
      .def("close", &Connection::close);
}

}  // namespace distgrad::testing
