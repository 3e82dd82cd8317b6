#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

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
// Threading: all methods are safe from any thread; mu_ guards the free list
// and the owners of allocated regions.
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
  // Frees every region held by a peer that is gone.
  void releaseAll(int peer);
  uint64_t bytesInUse() const;

 private:
  LocalArena(ArenaInfo info, char* base) : info_(info), base_(base) {}
  void freeRegion(uint64_t offset, uint64_t size);

  const ArenaInfo info_;
  char* const base_;
  mutable std::mutex mu_;
  std::map<uint64_t, uint64_t> free_;  // offset -> size, coalesced
  std::unordered_map<uint64_t, std::pair<uint64_t, int>> used_;  // offset -> (size, peer)
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
