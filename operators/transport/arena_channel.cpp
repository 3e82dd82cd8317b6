#include "transport/arena_channel.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>

#include <cstring>
#include <stdexcept>

namespace distgrad::transport {

void ArenaChannel::setOwnArena(std::shared_ptr<LocalArena> arena, int peer) {
  own_arena_ = std::move(arena);
  peer_rank_ = peer;
}

void ArenaChannel::enableSends() {
  arena_sends_ = own_arena_ != nullptr;
}

void ArenaChannel::setPeerArena(std::shared_ptr<PeerArena> peer,
                                std::function<void(uint64_t)> release) {
  peer_arena_ = std::move(peer);
  release_peer_region_ = std::move(release);
}

at::Tensor ArenaChannel::emptyLendable(c10::IntArrayRef sizes, c10::ScalarType dtype) {
  uint64_t nbytes = c10::multiply_integers(sizes) * c10::elementSize(dtype);
  if (!arena_sends_ || nbytes < kMinBytes) {
    return {};
  }
  auto offset = own_arena_->allocateLendable(nbytes);
  if (!offset) {
    return {};
  }
  return viewOfLocalHold(*offset, sizes, dtype);
}

at::Tensor ArenaChannel::emptyLocalCopy(uint64_t nbytes, c10::IntArrayRef sizes,
                                        c10::ScalarType dtype) {
  // Fresh heap memory this large often comes straight from the kernel, a
  // page fault per 4 KiB on first write: for 16 MiB, more than the copy.
  auto offset = own_arena_->allocateLocal(nbytes);
  if (!offset) {
    return at::empty(sizes, at::TensorOptions().dtype(dtype));
  }
  return viewOfLocalHold(*offset, sizes, dtype);
}

at::Tensor ArenaChannel::viewOfLocalHold(uint64_t region, c10::IntArrayRef sizes,
                                         c10::ScalarType dtype) {
  auto deleter = [arena = own_arena_, region](void*) { arena->releaseLocal(region); };
  return at::from_blob(own_arena_->base() + region, sizes, deleter,
                       at::TensorOptions().dtype(dtype));
}

std::vector<TensorPlacement> ArenaChannel::place(const std::vector<at::Tensor>& tensors) {
  std::vector<TensorPlacement> placements;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    if (t.nbytes() == 0) {
      continue;
    }
    const char* data = static_cast<const char*>(t.const_data_ptr());
    // Computed in our arena (emptyLendable): the region is lent as it is.
    if (arena_sends_ && data >= own_arena_->base() &&
        data < own_arena_->base() + own_arena_->info().size &&
        own_arena_->lend(data - own_arena_->base(), t.nbytes(), peer_rank_)) {
      placements.resize(tensors.size());
      placements[i] = {TensorLocation::kSenderArena,
                       static_cast<uint64_t>(data - own_arena_->base())};
      continue;
    }
    // A view of the peer's arena, received on this connection (so the
    // peer's hold on its region is released after this frame): it goes
    // back as a reference.
    const char* peer_end = peer_arena_ ? peer_arena_->base() + peer_arena_->size() : nullptr;
    if (peer_arena_ && data >= peer_arena_->base() && data < peer_end &&
        t.nbytes() <= static_cast<uint64_t>(peer_end - data)) {
      placements.resize(tensors.size());
      placements[i] = {TensorLocation::kReceiverArena,
                       static_cast<uint64_t>(data - peer_arena_->base())};
      continue;
    }
    if (!arena_sends_ || t.nbytes() < kMinBytes) {
      continue;
    }
    auto offset = own_arena_->allocate(t.nbytes(), peer_rank_);
    if (!offset) {
      continue;  // full: this one goes inline
    }
    placements.resize(tensors.size());
    placements[i] = {TensorLocation::kSenderArena, *offset};
    // torch's copy splits large copies across threads.
    at::from_blob(own_arena_->base() + *offset, t.sizes(), t.options()).copy_(t);
  }
  return placements;
}

void ArenaChannel::unplace(const std::vector<TensorPlacement>& placements) {
  for (const auto& placement : placements) {
    if (placement.location == TensorLocation::kSenderArena) {
      own_arena_->release(placement.offset, peer_rank_);
    }
  }
}

at::Tensor ArenaChannel::receive(TensorLocation location, uint64_t offset, uint64_t nbytes,
                                 c10::IntArrayRef sizes, c10::ScalarType dtype) {
  auto options = at::TensorOptions().dtype(dtype);
  if (location == TensorLocation::kReceiverArena) {
    // One of our regions, coming back from the peer that holds it. The peer
    // may keep its view of the region (a parameter server returning what it
    // stores): the tensor received is a copy, as RPC results must be.
    auto region = own_arena_ ? own_arena_->retainReturned(offset, nbytes, peer_rank_) : std::nullopt;
    if (!region) {
      throw std::runtime_error("reference to shared memory the peer does not hold");
    }
    if (c10::multiply_integers(sizes) * c10::elementSize(dtype) != nbytes) {
      own_arena_->releaseLocal(*region);
      throw std::runtime_error("shared memory reference does not match its tensor's size");
    }
    at::Tensor copy = emptyLocalCopy(nbytes, sizes, dtype);
    std::memcpy(copy.data_ptr(), own_arena_->base() + offset, nbytes);
    own_arena_->releaseLocal(*region);
    return copy;
  }
  // The first page holds the arena's token; regions are page-aligned.
  if (!peer_arena_ || offset < 4096 || offset % 4096 != 0 || offset > peer_arena_->size() ||
      nbytes > peer_arena_->size() - offset) {
    throw std::runtime_error("shared memory region out of the peer's arena");
  }
  // The view keeps the mapping alive and tells the peer when it is freed.
  auto deleter = [arena = peer_arena_, release = release_peer_region_, offset](void*) {
    release(offset);
  };
  return at::from_blob(peer_arena_->base() + offset, sizes, deleter, options);
}

}  // namespace distgrad::transport
