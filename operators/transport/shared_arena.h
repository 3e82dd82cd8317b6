#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

namespace distgrad::transport {

// How a peer on the same machine can map a worker's arena: through
// /proc/<pid>/fd/<fd>, checked against a random token at its start.
struct ArenaInfo {
  int32_t pid = -1;
  int32_t fd = -1;
  uint64_t size = 0;
  std::array<uint8_t, 16> token{};

  bool present() const { return fd >= 0 && size > 0; }
  std::string encode() const;
  // Throws std::runtime_error if bytes is not an encoded ArenaInfo.
  static ArenaInfo decode(const std::string& bytes);
};

// The shared memory (a memfd) a worker copies large outgoing tensors into,
// so that a peer on the same machine receives them without any copy: the
// received tensor is a view of this memory until the peer releases it.
//
// A region is held by the peer it was sent to and, when that peer sends its
// view back, by the views of it here (local holds): it is free when nobody
// holds it.
//
// Threading: all methods are safe from any thread; mu_ guards the free list
// and the regions in use.
class LocalArena {
 public:
  // Null if shared memory is not available here.
  static std::unique_ptr<LocalArena> create(uint64_t size);
  ~LocalArena();
  LocalArena(const LocalArena&) = delete;
  LocalArena& operator=(const LocalArena&) = delete;

  const ArenaInfo& info() const { return info_; }
  char* base() const { return base_; }

  // A region of nbytes for a message to peer, or nothing if the arena is
  // full (the caller then sends the bytes inline).
  std::optional<uint64_t> allocate(uint64_t nbytes, int peer);
  // The peer is done with the region at offset. Unknown offsets (a peer
  // that misbehaves) are ignored.
  void release(uint64_t offset, int peer);
  // Drops the holds of a peer that is gone.
  void releaseAll(int peer);
  // A view of [offset, offset + nbytes) came back from peer, which holds the
  // region containing it: adds a local hold on that region and returns its
  // offset, or nothing if peer holds no such region.
  std::optional<uint64_t> retainReturned(uint64_t offset, uint64_t nbytes, int peer);
  // A view retained with retainReturned is freed.
  void releaseLocal(uint64_t region);
  uint64_t bytesInUse() const;

 private:
  struct Region {
    uint64_t size = 0;
    int peer = -1;  // the peer it was sent to
    bool peer_holds = true;
    int local_holds = 0;
  };

  LocalArena(ArenaInfo info, char* base) : info_(info), base_(base) {}
  // Frees the region at it if nobody holds it any more.
  void freeIfUnheld(std::map<uint64_t, Region>::iterator it);
  void freeRegion(uint64_t offset, uint64_t size);

  const ArenaInfo info_;
  char* const base_;
  mutable std::mutex mu_;
  std::map<uint64_t, uint64_t> free_;  // offset -> size, coalesced
  std::map<uint64_t, Region> used_;    // by offset
};

// A peer's arena mapped into this process. Tensors received from the peer
// point into it; the mapping lives as long as any of them does.
class PeerArena {
 public:
  // Null if the arena cannot be mapped here (another machine, another PID
  // namespace, no permission) or does not carry the announced token.
  static std::shared_ptr<PeerArena> open(const ArenaInfo& info);
  ~PeerArena();
  PeerArena(const PeerArena&) = delete;
  PeerArena& operator=(const PeerArena&) = delete;

  char* base() const { return base_; }
  uint64_t size() const { return size_; }

 private:
  PeerArena(char* base, uint64_t size) : base_(base), size_(size) {}

  char* const base_;
  const uint64_t size_;
};

}  // namespace distgrad::transport
