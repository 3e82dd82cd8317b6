#include "transport/handshake.h"

#include <stdexcept>

namespace distgrad::transport {

namespace {

// Compares in time independent of where the strings differ.
bool secretsEqual(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) {
    diff |= static_cast<unsigned char>(a[i] ^ b[i % (b.empty() ? 1 : b.size())]);
  }
  return diff == 0 && !b.empty();
}

}  // namespace

Message encodeHello(int rank, const std::string& secret) {
  Message m;
  m.type = kHello;
  m.id = static_cast<uint64_t>(rank);
  m.meta = secret;
  return m;
}

Message encodeAccept(int rank) {
  Message m;
  m.type = kAccept;
  m.id = static_cast<uint64_t>(rank);
  return m;
}

int decodeHello(const Message& hello, const std::string& secret, int world_size) {
  if (hello.type != kHello || !hello.tensors.empty()) {
    throw std::runtime_error("expected a hello frame, got frame type " + std::to_string(hello.type));
  }
  if (!secretsEqual(hello.meta, secret)) {
    throw std::runtime_error("wrong job secret");
  }
  if (hello.id >= static_cast<uint64_t>(world_size)) {
    throw std::runtime_error("rank " + std::to_string(hello.id) + " out of range for world size " +
                             std::to_string(world_size));
  }
  return static_cast<int>(hello.id);
}

int decodeAccept(const Message& accept) {
  if (accept.type != kAccept) {
    throw std::runtime_error("expected an accept frame, got frame type " +
                             std::to_string(accept.type));
  }
  return static_cast<int>(accept.id);
}

}  // namespace distgrad::transport
