#pragma once

#include "transport/frame.h"
#include "transport/message.h"
#include "transport/shared_arena.h"

#include <functional>
#include <string>
#include <vector>

namespace distgrad::transport {

// The job key, as the transport uses it: HMAC-SHA256 of a message, and its
// constant-time check, supplied by the layer that holds the key (a vetted
// implementation; the transport never sees the key).
struct Authenticator {
  std::function<std::string(const std::string& message)> mac;
  std::function<bool(const std::string& message, const std::string& mac)> verify;
};

// Control frames. A connection opens with a challenge-response in which
// both sides prove they hold the job key without sending it, each over a
// fresh nonce of the other side (a recorded handshake cannot be replayed):
//
//   connector -> acceptor   hello      (its rank, nonce_c)
//   acceptor  -> connector  challenge  (its rank, nonce_a, MAC_a)
//   connector -> acceptor   proof      (MAC_c, its message limits, its shared memory arena)
//   acceptor  -> connector  accept     (its limits, its arena, whether it mapped the connector's)
//   connector -> acceptor   arena ready (whether it mapped the acceptor's)
//
// MAC_a = MAC("distgrad challenge" | acceptor rank | connector rank | nonce_c | nonce_a)
// MAC_c = MAC("distgrad proof"     | connector rank | acceptor rank | nonce_c | nonce_a)
//
// Nothing about a worker (its arena) is sent before the other side has
// proven it holds the key. Each side checks what it sends against the
// limits the other announced (see checkOutgoing). Each side sends large tensors through its arena
// only if the other side mapped it.
enum ControlType : uint16_t {
  kHello = 1,
  kAccept = 2,
  // Sent before a worker closes its connections on shutdown, so that the end
  // of the stream that follows is not mistaken for a crash.
  kGoodbye = 3,
  kArenaReady = 4,    // id: 1 if the sender mapped the receiver's arena
  kArenaRelease = 5,  // meta: offsets (u64) of arena regions the sender is done with
  kChallenge = 6,
  kProof = 7,
};

constexpr size_t kNonceBytes = 32;

// kNonceBytes from the operating system's random generator.
std::string makeNonce();

// The acceptor's side, in order; each decode throws std::runtime_error
// saying what is wrong (not the expected frame, malformed, wrong MAC, rank
// out of range).
struct Hello {
  int rank = 0;
  std::string nonce;
};
Message encodeHello(int rank, const std::string& nonce);
Hello decodeHello(const Message& hello, int world_size);

Message encodeChallenge(int rank, const std::string& nonce, const Authenticator& auth,
                        int connector_rank, const std::string& connector_nonce);
// Returns the acceptor's nonce after checking its MAC and rank.
std::string decodeChallenge(const Message& challenge, const Authenticator& auth, int expected_rank,
                            int connector_rank, const std::string& connector_nonce);

Message encodeProof(int rank, const Authenticator& auth, int acceptor_rank,
                    const std::string& connector_nonce, const std::string& acceptor_nonce,
                    const FrameLimits& limits, const ArenaInfo& arena);
struct Proof {
  FrameLimits limits;
  ArenaInfo arena;
};
// Returns the connector's limits and arena after checking its MAC.
Proof decodeProof(const Message& proof, const Authenticator& auth, int connector_rank,
                  int acceptor_rank, const std::string& connector_nonce,
                  const std::string& acceptor_nonce);

struct Accept {
  int rank = 0;
  FrameLimits limits;
  ArenaInfo arena;
  bool mapped_your_arena = false;
};
Message encodeAccept(int rank, const FrameLimits& limits, const ArenaInfo& arena,
                     bool mapped_your_arena);
Accept decodeAccept(const Message& accept);

Message encodeArenaReady(bool mapped);

Message encodeArenaRelease(const std::vector<uint64_t>& offsets);
// Throws std::runtime_error if meta is not a list of offsets.
std::vector<uint64_t> decodeArenaRelease(const Message& release);

}  // namespace distgrad::transport
