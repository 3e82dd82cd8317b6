#include "transport/handshake.h"

#include <cstring>
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

Message encodeHello(int rank, const std::string& secret, const ArenaInfo& arena) {
  Message m;
  m.type = kHello;
  m.id = static_cast<uint64_t>(rank);
  auto secret_len = static_cast<uint32_t>(secret.size());
  m.meta.assign(reinterpret_cast<const char*>(&secret_len), sizeof(secret_len));
  m.meta += secret;
  m.meta += arena.encode();
  return m;
}

Hello decodeHello(const Message& hello, const std::string& secret, int world_size) {
  if (hello.type != kHello || !hello.tensors.empty()) {
    throw std::runtime_error("expected a hello frame, got frame type " + std::to_string(hello.type));
  }
  uint32_t secret_len = 0;
  if (hello.meta.size() < sizeof(secret_len)) {
    throw std::runtime_error("malformed hello");
  }
  std::memcpy(&secret_len, hello.meta.data(), sizeof(secret_len));
  if (hello.meta.size() - sizeof(secret_len) < secret_len) {
    throw std::runtime_error("malformed hello");
  }
  if (!secretsEqual(hello.meta.substr(sizeof(secret_len), secret_len), secret)) {
    throw std::runtime_error("wrong job secret");
  }
  if (hello.id >= static_cast<uint64_t>(world_size)) {
    throw std::runtime_error("rank " + std::to_string(hello.id) + " out of range for world size " +
                             std::to_string(world_size));
  }
  Hello decoded;
  decoded.rank = static_cast<int>(hello.id);
  decoded.arena = ArenaInfo::decode(hello.meta.substr(sizeof(secret_len) + secret_len));
  return decoded;
}

Message encodeAccept(int rank, const ArenaInfo& arena, bool mapped_your_arena) {
  Message m;
  m.type = kAccept;
  m.id = static_cast<uint64_t>(rank);
  m.meta = arena.encode() + (mapped_your_arena ? '\1' : '\0');
  return m;
}

Accept decodeAccept(const Message& accept) {
  if (accept.type != kAccept) {
    throw std::runtime_error("expected an accept frame, got frame type " +
                             std::to_string(accept.type));
  }
  if (accept.meta.empty()) {
    throw std::runtime_error("malformed accept");
  }
  Accept decoded;
  decoded.rank = static_cast<int>(accept.id);
  decoded.arena = ArenaInfo::decode(accept.meta.substr(0, accept.meta.size() - 1));
  decoded.mapped_your_arena = accept.meta.back() == '\1';
  return decoded;
}

Message encodeArenaReady(bool mapped) {
  Message m;
  m.type = kArenaReady;
  m.id = mapped ? 1 : 0;
  return m;
}

Message encodeArenaRelease(const std::vector<uint64_t>& offsets) {
  Message m;
  m.type = kArenaRelease;
  m.meta.assign(reinterpret_cast<const char*>(offsets.data()), offsets.size() * sizeof(uint64_t));
  return m;
}

std::vector<uint64_t> decodeArenaRelease(const Message& release) {
  if (release.meta.size() % sizeof(uint64_t) != 0) {
    throw std::runtime_error("malformed arena release");
  }
  std::vector<uint64_t> offsets(release.meta.size() / sizeof(uint64_t));
  std::memcpy(offsets.data(), release.meta.data(), release.meta.size());
  return offsets;
}

}  // namespace distgrad::transport
