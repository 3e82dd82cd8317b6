#include "testing/unit_bindings.h"

#include "transport/handshake.h"

namespace distgrad::testing {

namespace py = pybind11;
using namespace distgrad::transport;

namespace {

// An Authenticator whose MAC is computed by Python (hmac in the tests):
// mac(message: bytes) -> bytes, verify(message: bytes, mac: bytes) -> bool.
// The handshake calls it on the caller's thread, which holds the GIL.
Authenticator pythonAuthenticator(py::object mac, py::object verify) {
  Authenticator auth;
  auth.mac = [mac](const std::string& message) {
    return mac(py::bytes(message)).cast<std::string>();
  };
  auth.verify = [verify](const std::string& message, const std::string& tag) {
    return verify(py::bytes(message), py::bytes(tag)).cast<bool>();
  };
  return auth;
}

}  // namespace

void initHandshakeBindings(py::module& m) {
  py::class_<Message>(m, "Message")
      .def(py::init([](uint16_t type, uint64_t id, const std::string& meta,
                       std::vector<at::Tensor> tensors) {
             return Message{type, id, meta, std::move(tensors)};
           }),
           py::arg("type") = 0, py::arg("id") = 0, py::arg("meta") = std::string(),
           py::arg("tensors") = std::vector<at::Tensor>())
      .def_readwrite("type", &Message::type)
      .def_readwrite("id", &Message::id)
      .def_property(
          "meta", [](const Message& msg) { return py::bytes(msg.meta); },
          [](Message& msg, const std::string& meta) { msg.meta = meta; })
      .def_readwrite("tensors", &Message::tensors);

  py::class_<Authenticator>(m, "Authenticator")
      .def(py::init(&pythonAuthenticator), py::arg("mac"), py::arg("verify"));

  py::class_<ArenaInfo>(m, "ArenaInfo")
      .def(py::init<>())
      .def_readwrite("pid", &ArenaInfo::pid)
      .def_readwrite("fd", &ArenaInfo::fd)
      .def_readwrite("size", &ArenaInfo::size)
      .def_property(
          "token",
          [](const ArenaInfo& info) {
            return py::bytes(reinterpret_cast<const char*>(info.token.data()), info.token.size());
          },
          [](ArenaInfo& info, const std::string& token) {
            if (token.size() != info.token.size()) {
              throw std::invalid_argument("an arena token is 16 bytes");
            }
            std::copy(token.begin(), token.end(), info.token.begin());
          })
      .def("present", &ArenaInfo::present)
      .def("encode", [](const ArenaInfo& info) { return py::bytes(info.encode()); })
      .def_static("decode", &ArenaInfo::decode);

  m.attr("HELLO") = static_cast<int>(kHello);
  m.attr("ACCEPT") = static_cast<int>(kAccept);
  m.attr("GOODBYE") = static_cast<int>(kGoodbye);
  m.attr("ARENA_READY") = static_cast<int>(kArenaReady);
  m.attr("ARENA_RELEASE") = static_cast<int>(kArenaRelease);
  m.attr("CHALLENGE") = static_cast<int>(kChallenge);
  m.attr("PROOF") = static_cast<int>(kProof);
  m.attr("NONCE_BYTES") = kNonceBytes;

  m.def("make_nonce", [] { return py::bytes(makeNonce()); });
  m.def("encode_hello", &encodeHello, py::arg("rank"), py::arg("nonce"));
  m.def(
      "decode_hello",
      [](const Message& hello, int world_size) {
        Hello decoded = decodeHello(hello, world_size);
        return py::make_tuple(decoded.rank, py::bytes(decoded.nonce));
      },
      py::arg("hello"), py::arg("world_size"));
  m.def("encode_challenge", &encodeChallenge, py::arg("rank"), py::arg("nonce"), py::arg("auth"),
        py::arg("connector_rank"), py::arg("connector_nonce"));
  m.def(
      "decode_challenge",
      [](const Message& challenge, const Authenticator& auth, int expected_rank,
         int connector_rank, const std::string& connector_nonce) {
        return py::bytes(
            decodeChallenge(challenge, auth, expected_rank, connector_rank, connector_nonce));
      },
      py::arg("challenge"), py::arg("auth"), py::arg("expected_rank"), py::arg("connector_rank"),
      py::arg("connector_nonce"));
  m.def("encode_proof", &encodeProof, py::arg("rank"), py::arg("auth"), py::arg("acceptor_rank"),
        py::arg("connector_nonce"), py::arg("acceptor_nonce"), py::arg("limits"),
        py::arg("arena"));
  m.def(
      "decode_proof",
      [](const Message& proof, const Authenticator& auth, int connector_rank, int acceptor_rank,
         const std::string& connector_nonce, const std::string& acceptor_nonce) {
        Proof decoded =
            decodeProof(proof, auth, connector_rank, acceptor_rank, connector_nonce, acceptor_nonce);
        return py::make_tuple(decoded.limits, decoded.arena);
      },
      py::arg("proof"), py::arg("auth"), py::arg("connector_rank"), py::arg("acceptor_rank"),
      py::arg("connector_nonce"), py::arg("acceptor_nonce"));
  m.def("encode_accept", &encodeAccept, py::arg("rank"), py::arg("limits"), py::arg("arena"),
        py::arg("mapped_your_arena"));
  m.def(
      "decode_accept",
      [](const Message& accept) {
        Accept decoded = decodeAccept(accept);
        return py::make_tuple(decoded.rank, decoded.limits, decoded.arena,
                              decoded.mapped_your_arena);
      },
      py::arg("accept"));
  m.def("encode_arena_ready", &encodeArenaReady, py::arg("mapped"));
  m.def("encode_arena_release", &encodeArenaRelease, py::arg("offsets"));
  m.def("decode_arena_release", &decodeArenaRelease, py::arg("release"));
}

}  // namespace distgrad::testing
