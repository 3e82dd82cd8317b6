#pragma once

#include "transport/message.h"
#include "transport/shared_arena.h"

#include <string>
#include <vector>

namespace distgrad::transport {

// Control frames. A connection opens with a hello from the connecting worker
// (its rank, the job secret, its shared memory arena) and an accept from the
// accepting worker (its rank and arena, and whether it could map the
// connecting worker's arena), or is closed; the connecting worker then says
// whether it could map the accepting worker's arena. Each side sends large
// tensors through its arena only if the other side mapped it.
enum ControlType : uint16_t {
  kHello = 1,
  kAccept = 2,
  // Sent before a worker closes its connections on shutdown, so that the end
  // of the stream that follows is not mistaken for a crash.
  kGoodbye = 3,
  kArenaReady = 4,    // id: 1 if the sender mapped the receiver's arena
  kArenaRelease = 5,  // meta: offsets (u64) of arena regions the sender is done with
};

struct Hello {
  int rank = 0;
  ArenaInfo arena;
};

struct Accept {
  int rank = 0;
  ArenaInfo arena;
  bool mapped_your_arena = false;
};

Message encodeHello(int rank, const std::string& secret, const ArenaInfo& arena);
// Throws std::runtime_error saying what is wrong (wrong secret, rank out of
// range, not a hello).
Hello decodeHello(const Message& hello, const std::string& secret, int world_size);

Message encodeAccept(int rank, const ArenaInfo& arena, bool mapped_your_arena);
Accept decodeAccept(const Message& accept);

Message encodeArenaReady(bool mapped);

Message encodeArenaRelease(const std::vector<uint64_t>& offsets);
// Throws std::runtime_error if meta is not a list of offsets.
std::vector<uint64_t> decodeArenaRelease(const Message& release);

}  // namespace distgrad::transport
