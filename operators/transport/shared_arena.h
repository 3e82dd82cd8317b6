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
// Threading: all methods are safe from any thread; mu_ guards the free list,
// the regions in use and the count of lends.
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
  // A region of nbytes that this worker writes first (a result computed in
  // place) and may then lend to one peer without a copy: it starts with a
  // local hold, which releaseLocal gives back. Nothing if the arena is full.
  std::optional<uint64_t> allocateLendable(uint64_t nbytes);
  // Hands the lendable region at offset, of at least nbytes, to peer as if
  // it had been allocated for it (the peer then releases it). Only once per
  // region: returns false, changing nothing, for any other offset, a region
  // already lent, or one too small.
  bool lend(uint64_t offset, uint64_t nbytes, int peer);
  // A region of nbytes that only this worker holds (a tensor received as a
  // copy, kept in pages that stay warm), released with releaseLocal. Never
  // lent: sending it copies it, as any tensor. Nothing if the arena is full
  // or such regions would take more than half of it: the other half is kept
  // for messages in flight.
  std::optional<uint64_t> allocateLocal(uint64_t nbytes);
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
  // How many regions lend() has handed to peers.
  uint64_t numLends() const;

 private:
  struct Region {
    uint64_t size = 0;
    int peer = -1;  // the peer it was sent to
    bool peer_holds = true;
    int local_holds = 0;
    bool lendable = false;  // allocateLendable, not lent yet
    bool local_copy = false;  // allocateLocal
  };

  LocalArena(ArenaInfo info, char* base) : info_(info), base_(base) {}
  // Takes a first-fit free range of size bytes for region; with mu_ held
  // (by held).
  std::optional<uint64_t> take(const std::lock_guard<std::mutex>& held, uint64_t size,
                               Region region);
  // Frees the region at it if nobody holds it any more.
  void freeIfUnheld(std::map<uint64_t, Region>::iterator it);
  void freeRegion(uint64_t offset, uint64_t size);

  const ArenaInfo info_;
  char* const base_;
  mutable std::mutex mu_;
  std::map<uint64_t, uint64_t> free_;  // offset -> size, coalesced
  std::map<uint64_t, Region> used_;    // by offset
  uint64_t num_lends_ = 0;
  uint64_t local_copy_bytes_ = 0;  // regions of allocateLocal
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
