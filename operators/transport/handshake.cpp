#include "transport/handshake.h"

#include <sys/random.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace distgrad::transport {

namespace {

void expectType(const Message& m, uint16_t type, const char* what) {
  if (m.type != type || !m.tensors.empty()) {
    throw std::runtime_error(std::string("expected ") + what + ", got frame type " +
                             std::to_string(m.type));
  }
}

// What a MAC covers: the role, both ranks (the signer's first) and both nonces.
std::string macInput(const char* role, int signer_rank, int other_rank,
                     const std::string& connector_nonce, const std::string& acceptor_nonce) {
  return std::string(role) + '\0' + std::to_string(signer_rank) + '\0' + std::to_string(other_rank) +
         '\0' + connector_nonce + acceptor_nonce;
}

constexpr const char* kChallengeRole = "distgrad challenge";
constexpr const char* kProofRole = "distgrad proof";

}  // namespace

std::string makeNonce() {
  std::string nonce(kNonceBytes, '\0');
  size_t filled = 0;
  while (filled < nonce.size()) {
    ssize_t got = ::getrandom(nonce.data() + filled, nonce.size() - filled, 0);
    if (got < 0) {
      if (errno == EINTR) {
        continue;
      }
      throw std::runtime_error(std::string("getrandom failed: ") + std::strerror(errno));
    }
    filled += static_cast<size_t>(got);
  }
  return nonce;
}

Message encodeHello(int rank, const std::string& nonce) {
  Message m;
  m.type = kHello;
  m.id = static_cast<uint64_t>(rank);
  m.meta = nonce;
  return m;
}

Hello decodeHello(const Message& hello, int world_size) {
  expectType(hello, kHello, "a hello");
  if (hello.meta.size() != kNonceBytes) {
    throw std::runtime_error("malformed hello");
  }
  if (hello.id >= static_cast<uint64_t>(world_size)) {
    throw std::runtime_error("rank " + std::to_string(hello.id) + " out of range for world size " +
                             std::to_string(world_size));
  }
  return {static_cast<int>(hello.id), hello.meta};
}

Message encodeChallenge(int rank, const std::string& nonce, const Authenticator& auth,
                        int connector_rank, const std::string& connector_nonce) {
  Message m;
  m.type = kChallenge;
  m.id = static_cast<uint64_t>(rank);
  m.meta = nonce + auth.mac(macInput(kChallengeRole, rank, connector_rank, connector_nonce, nonce));
  return m;
}

std::string decodeChallenge(const Message& challenge, const Authenticator& auth, int expected_rank,
                            int connector_rank, const std::string& connector_nonce) {
  expectType(challenge, kChallenge, "a challenge");
  if (challenge.meta.size() <= kNonceBytes) {
    throw std::runtime_error("malformed challenge");
  }
  if (challenge.id != static_cast<uint64_t>(expected_rank)) {
    throw std::runtime_error("it answered as rank " + std::to_string(challenge.id));
  }
  std::string nonce = challenge.meta.substr(0, kNonceBytes);
  std::string mac = challenge.meta.substr(kNonceBytes);
  if (!auth.verify(macInput(kChallengeRole, expected_rank, connector_rank, connector_nonce, nonce), mac)) {
    throw std::runtime_error("it does not hold the job key");
  }
  return nonce;
}

Message encodeProof(int rank, const Authenticator& auth, int acceptor_rank,
                    const std::string& connector_nonce, const std::string& acceptor_nonce,
                    const FrameLimits& limits, const ArenaInfo& arena) {
  Message m;
  m.type = kProof;
  m.id = static_cast<uint64_t>(rank);
  std::string mac = auth.mac(macInput(kProofRole, rank, acceptor_rank, connector_nonce, acceptor_nonce));
  auto mac_len = static_cast<uint32_t>(mac.size());
  m.meta.assign(reinterpret_cast<const char*>(&mac_len), sizeof(mac_len));
  m.meta += mac;
  m.meta += limits.encode();
  m.meta += arena.encode();
  return m;
}

Proof decodeProof(const Message& proof, const Authenticator& auth, int connector_rank,
                  int acceptor_rank, const std::string& connector_nonce,
                  const std::string& acceptor_nonce) {
  expectType(proof, kProof, "a proof");
  uint32_t mac_len = 0;
  if (proof.id != static_cast<uint64_t>(connector_rank) || proof.meta.size() < sizeof(mac_len)) {
    throw std::runtime_error("malformed proof");
  }
  std::memcpy(&mac_len, proof.meta.data(), sizeof(mac_len));
  if (proof.meta.size() - sizeof(mac_len) < mac_len) {
    throw std::runtime_error("malformed proof");
  }
  std::string mac = proof.meta.substr(sizeof(mac_len), mac_len);
  if (!auth.verify(macInput(kProofRole, connector_rank, acceptor_rank, connector_nonce, acceptor_nonce),
                   mac)) {
    throw std::runtime_error("it does not hold the job key");
  }
  std::string rest = proof.meta.substr(sizeof(mac_len) + mac_len);
  Proof decoded;
  decoded.limits = FrameLimits::decode(rest);
  decoded.arena = ArenaInfo::decode(rest.substr(FrameLimits::kEncodedSize));
  return decoded;
}

Message encodeAccept(int rank, const FrameLimits& limits, const ArenaInfo& arena,
                     bool mapped_your_arena) {
  Message m;
  m.type = kAccept;
  m.id = static_cast<uint64_t>(rank);
  m.meta = limits.encode() + arena.encode() + (mapped_your_arena ? '\1' : '\0');
  return m;
}

Accept decodeAccept(const Message& accept) {
  expectType(accept, kAccept, "an accept");
  if (accept.meta.size() < FrameLimits::kEncodedSize + 1) {
    throw std::runtime_error("malformed accept");
  }
  Accept decoded;
  decoded.rank = static_cast<int>(accept.id);
  decoded.limits = FrameLimits::decode(accept.meta);
  decoded.arena = ArenaInfo::decode(accept.meta.substr(
      FrameLimits::kEncodedSize, accept.meta.size() - 1 - FrameLimits::kEncodedSize));
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
  if (!offsets.empty()) {  // data() of an empty vector may be null, which memcpy must not get
    std::memcpy(offsets.data(), release.meta.data(), release.meta.size());
  }
  return offsets;
}

}  // namespace distgrad::transport
