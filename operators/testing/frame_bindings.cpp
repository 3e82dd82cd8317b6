#include "testing/unit_bindings.h"

#include "transport/frame.h"

#include <ATen/ops/empty.h>

#include <stdexcept>

namespace distgrad::testing {

namespace py = pybind11;
using namespace distgrad::transport;

void initFrameBindings(py::module& m) {
  py::class_<FrameHeader>(m, "FrameHeader")
      .def(py::init<>())
      .def_readonly_static("MAGIC", &FrameHeader::kMagic)
      .def_readonly_static("VERSION", &FrameHeader::kVersion)
      .def_readonly_static("SIZE", &FrameHeader::kSize)
      .def_readwrite("magic", &FrameHeader::magic)
      .def_readwrite("version", &FrameHeader::version)
      .def_readwrite("type", &FrameHeader::type)
      .def_readwrite("id", &FrameHeader::id)
      .def_readwrite("meta_len", &FrameHeader::meta_len)
      .def_readwrite("desc_len", &FrameHeader::desc_len)
      .def_readwrite("data_len", &FrameHeader::data_len)
      .def("encode",
           [](const FrameHeader& h) {
             std::string out(FrameHeader::kSize, '\0');
             h.encode(out.data());
             return py::bytes(out);
           })
      .def_static("decode", [](const std::string& bytes) {
        // decode reads kSize bytes; the transport always has that many.
        if (bytes.size() < FrameHeader::kSize) {
          throw std::invalid_argument("a frame header is 32 bytes");
        }
        return FrameHeader::decode(bytes.data());
      });

  py::class_<FrameLimits>(m, "FrameLimits")
      .def(py::init<>())
      .def(py::init([](uint64_t max_meta_bytes, uint64_t max_data_bytes) {
             FrameLimits limits;
             limits.max_meta_bytes = max_meta_bytes;
             limits.max_data_bytes = max_data_bytes;
             return limits;
           }),
           py::arg("max_meta_bytes"), py::arg("max_data_bytes"))
      .def_readonly_static("MAX_DESC_BYTES", &FrameLimits::kMaxDescBytes)
      .def_readonly_static("MAX_DIMS", &FrameLimits::kMaxDims)
      .def_readonly_static("ENCODED_SIZE", &FrameLimits::kEncodedSize)
      .def_readwrite("max_meta_bytes", &FrameLimits::max_meta_bytes)
      .def_readwrite("max_data_bytes", &FrameLimits::max_data_bytes)
      .def("encode", [](const FrameLimits& l) { return py::bytes(l.encode()); })
      .def_static("decode", &FrameLimits::decode);

  m.def("validate_header", &validateHeader, py::arg("header"), py::arg("limits"));
  m.def("check_outgoing", &checkOutgoing, py::arg("meta_bytes"), py::arg("tensors"),
        py::arg("limits"));

  // placements: one (location, offset) per tensor, or empty (all inline).
  // Returns (descriptor block, inline data length).
  m.def(
      "encode_descriptors",
      [](const std::vector<at::Tensor>& tensors,
         const std::vector<std::pair<int, uint64_t>>& placements) {
        std::vector<TensorPlacement> converted;
        for (const auto& [location, offset] : placements) {
          converted.push_back({static_cast<TensorLocation>(location), offset});
        }
        uint64_t data_len = 0;
        std::string block = encodeDescriptors(tensors, converted, &data_len);
        return py::make_tuple(py::bytes(block), data_len);
      },
      py::arg("tensors"), py::arg("placements") = std::vector<std::pair<int, uint64_t>>());

  // arena_tensor, if given, is called as arena_tensor(location, offset,
  // nbytes, sizes) for each tensor not inline; it may raise, and otherwise
  // an empty tensor of the descriptor's dtype stands for the arena's.
  // Returns (tensors, inline flags).
  m.def(
      "allocate_from_descriptors",
      [](const std::string& block, uint64_t data_len, const py::object& arena_tensor) {
        ArenaTensorFactory factory;
        if (!arena_tensor.is_none()) {
          factory = [arena_tensor](TensorLocation location, uint64_t offset, uint64_t nbytes,
                                   c10::IntArrayRef sizes, c10::ScalarType dtype) {
            arena_tensor(static_cast<int>(location), offset, nbytes, sizes.vec());
            return at::empty(sizes, at::TensorOptions().dtype(dtype));
          };
        }
        DecodedTensors decoded = allocateFromDescriptors(block, data_len, factory);
        std::vector<bool> inline_data(decoded.inline_data.begin(), decoded.inline_data.end());
        return py::make_tuple(decoded.tensors, inline_data);
      },
      py::arg("block"), py::arg("data_len"), py::arg("arena_tensor") = py::none());
}

}  // namespace distgrad::testing
