#pragma once

#include "transport/frame.h"
#include "transport/shared_arena.h"

#include <ATen/core/Tensor.h>

#include <atomic>
#include <functional>
#include <memory>
#include <vector>

namespace distgrad::transport {

// Where the tensors of one connection's frames live when the two workers
// share a machine (see shared_arena.h): the channel beside the connection's
// byte stream, as TensorPipe keeps channels apart from transports. Outgoing
// tensors of kMinBytes or more are copied into this worker's arena once the
// peer has mapped it, unless they were computed there (emptyLendable);
// views of the peer's arena go back as references; incoming descriptors
// become views of the peer's arena, or copies of regions of ours coming back.
//
// Threading: the setters are called once, before frames flow (except
// enableSends, from any thread); place/unplace and emptyLendable on any
// thread; receive on the reader thread.
class ArenaChannel {
 public:
  // This worker's arena, and the rank of the peer.
  void setOwnArena(std::shared_ptr<LocalArena> arena, int peer);
  // The peer mapped our arena: from now on, place() puts tensors of
  // kMinBytes or more there instead of inline.
  void enableSends();
  // Tensors the peer places in its arena are received as views of peer's
  // mapping; when one is freed, release(offset) is called (on the freeing
  // thread; it must not block).
  void setPeerArena(std::shared_ptr<PeerArena> peer, std::function<void(uint64_t)> release);

  // Smaller tensors are cheaper to send inline.
  static constexpr uint64_t kMinBytes = 64 * 1024;

  // A contiguous tensor of sizes and dtype in this worker's arena, whose
  // region the first frame that sends it lends to the peer instead of
  // copying it: for a result computed in place, that nothing else holds.
  // Undefined if it is smaller than kMinBytes, arena sends are not enabled
  // or the arena is full.
  at::Tensor emptyLendable(c10::IntArrayRef sizes, c10::ScalarType dtype);

  // Decides where each tensor travels, copying those placed in our arena
  // there (lending those made by emptyLendable); an empty result means all
  // inline.
  std::vector<TensorPlacement> place(const std::vector<at::Tensor>& tensors);
  // Gives back the regions of placements that will not be sent.
  void unplace(const std::vector<TensorPlacement>& placements);
  // The tensor a descriptor with this location describes. Throws
  // std::runtime_error for a region the peer cannot name.
  at::Tensor receive(TensorLocation location, uint64_t offset, uint64_t nbytes,
                     c10::IntArrayRef sizes, c10::ScalarType dtype);

 private:
  // An empty tensor of nbytes (its sizes and dtype) to copy a region coming
  // back into: in a region of our arena if one is free for it
  // (allocateLocal), else on the heap.
  at::Tensor emptyLocalCopy(uint64_t nbytes, c10::IntArrayRef sizes, c10::ScalarType dtype);
  // A tensor over a region of our arena held locally (allocateLendable,
  // allocateLocal), whose hold it gives back when freed.
  at::Tensor viewOfLocalHold(uint64_t region, c10::IntArrayRef sizes, c10::ScalarType dtype);

  std::shared_ptr<LocalArena> own_arena_;
  int peer_rank_ = -1;
  std::atomic<bool> arena_sends_{false};
  std::shared_ptr<PeerArena> peer_arena_;
  std::function<void(uint64_t)> release_peer_region_;
};

}  // namespace distgrad::transport
