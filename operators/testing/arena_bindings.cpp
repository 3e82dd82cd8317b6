#include "testing/unit_bindings.h"

#include "transport/shared_arena.h"

namespace distgrad::testing {

namespace py = pybind11;
using namespace distgrad::transport;

void initArenaBindings(py::module& m) {
  // A worker's own arena: its free list works without any peer process.
  py::class_<LocalArena>(m, "LocalArena")
      .def_static("create", &LocalArena::create, py::arg("size"))
      .def_property_readonly("info", &LocalArena::info)
      .def("allocate", &LocalArena::allocate, py::arg("nbytes"), py::arg("peer"))
      .def("allocate_lendable", &LocalArena::allocateLendable, py::arg("nbytes"))
      .def("allocate_local", &LocalArena::allocateLocal, py::arg("nbytes"))
      .def("lend", &LocalArena::lend, py::arg("offset"), py::arg("nbytes"), py::arg("peer"))
      .def("num_lends", &LocalArena::numLends)
      .def("release", &LocalArena::release, py::arg("offset"), py::arg("peer"))
      .def("release_all", &LocalArena::releaseAll, py::arg("peer"))
      .def("retain_returned", &LocalArena::retainReturned, py::arg("offset"), py::arg("nbytes"),
           py::arg("peer"))
      .def("release_local", &LocalArena::releaseLocal, py::arg("region"))
      .def("bytes_in_use", &LocalArena::bytesInUse)
      .def(
          "write",
          [](const LocalArena& arena, uint64_t offset, const std::string& bytes) {
            if (offset > arena.info().size || bytes.size() > arena.info().size - offset) {
              throw std::out_of_range("outside the arena");
            }
            std::copy(bytes.begin(), bytes.end(), arena.base() + offset);
          },
          py::arg("offset"), py::arg("bytes"));

  // A mapping of an arena through /proc/<pid>/fd/<fd>: this process can
  // map its own, which is enough to check the token and the size.
  py::class_<PeerArena, std::shared_ptr<PeerArena>>(m, "PeerArena")
      .def_static("open", &PeerArena::open, py::arg("info"))
      .def_property_readonly("size", &PeerArena::size)
      .def(
          "read",
          [](const PeerArena& arena, uint64_t offset, uint64_t nbytes) {
            if (offset > arena.size() || nbytes > arena.size() - offset) {
              throw std::out_of_range("outside the arena");
            }
            return py::bytes(arena.base() + offset, nbytes);
          },
          py::arg("offset"), py::arg("nbytes"));
}

}  // namespace distgrad::testing
