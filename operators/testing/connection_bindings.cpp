#include "testing/unit_bindings.h"

#include "transport/connection.h"
#include "transport/poll_window.h"

#include <unistd.h>

#include <chrono>
#include <memory>
#include <thread>

namespace distgrad::testing {

namespace py = pybind11;
using transport::Connection;
using transport::FrameLimits;
using transport::Message;
using transport::PollWindow;

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
  // A Connection over a duplicate of fd (a socketpair end: no network),
  // with poll_gate() -> bool as its poll gate if given. Blocking
  // calls release the GIL, so a test can block one in a thread.
  py::class_<Connection, std::shared_ptr<Connection>>(m, "Connection")
      .def(py::init([](int fd, py::object poll_gate) {
             Connection::PollGate gate;
             if (!poll_gate.is_none()) {
               auto held = std::shared_ptr<py::object>(new py::object(std::move(poll_gate)),
                                                       [](py::object* o) {
                                                         py::gil_scoped_acquire gil;
                                                         delete o;
                                                       });
               gate = [held] {
                 py::gil_scoped_acquire gil;
                 return (*held)().cast<bool>();
               };
             }
             return std::make_shared<Connection>(::dup(fd), "socketpair", std::move(gate));
           }),
           py::arg("fd"), py::arg("poll_gate") = py::none())
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
      // Polls as a thread waiting for a reply does (Connection::pollFrames)
      // until count frames came, or the poll stops, taking handle_us to
      // handle each; returns the frames read, as receive() does.
      .def(
          "poll_frames",
          [](Connection& c, size_t count, int64_t handle_us) {
            std::vector<Message> got;
            {
              py::gil_scoped_release no_gil;
              c.pollFrames(
                  FrameLimits(), [&] { return got.size() < count; },
                  [&](Message&& message) {
                    got.push_back(std::move(message));
                    std::this_thread::sleep_for(std::chrono::microseconds(handle_us));
                  });
            }
            py::list frames;
            for (const auto& message : got) {
              frames.append(py::make_tuple(message.type, message.id, py::bytes(message.meta),
                                           message.tensors));
            }
            return frames;
          },
          py::arg("count"), py::arg("handle_us") = 0)
      .def("close", &Connection::close)
      .def_property_readonly("poll_window_us",
                             [](const Connection& c) { return c.pollWindow().count(); });

  py::class_<PollWindow>(m, "PollWindow")
      .def(py::init<>())
      .def_property_readonly("current_us", [](const PollWindow& w) { return w.current().count(); })
      .def("frame_after_us", [](PollWindow& w, int64_t waited) {
        w.frameAfter(std::chrono::microseconds(waited));
      });
}

}  // namespace distgrad::testing
