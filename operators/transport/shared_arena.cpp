#include "transport/shared_arena.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <random>
#include <stdexcept>

namespace distgrad::transport {

namespace {

// Regions start on page boundaries, so a region never shares a page with
// another and a peer's view of it is page-aligned.
constexpr uint64_t kRegionAlignment = 4096;
constexpr size_t kEncodedSize = 4 + 4 + 8 + 16;

uint64_t roundUp(uint64_t n) {
  return (n + kRegionAlignment - 1) / kRegionAlignment * kRegionAlignment;
}

}  // namespace

std::string ArenaInfo::encode() const {
  std::string out(kEncodedSize, '\0');
  char* p = out.data();
  std::memcpy(p, &pid, 4);
  std::memcpy(p + 4, &fd, 4);
  std::memcpy(p + 8, &size, 8);
  std::memcpy(p + 16, token.data(), token.size());
  return out;
}

ArenaInfo ArenaInfo::decode(const std::string& bytes) {
  if (bytes.size() != kEncodedSize) {
    throw std::runtime_error("malformed shared memory announcement");
  }
  ArenaInfo info;
  const char* p = bytes.data();
  std::memcpy(&info.pid, p, 4);
  std::memcpy(&info.fd, p + 4, 4);
  std::memcpy(&info.size, p + 8, 8);
  std::memcpy(info.token.data(), p + 16, info.token.size());
  return info;
}

std::unique_ptr<LocalArena> LocalArena::create(uint64_t size) {
  size = roundUp(size);
  if (size == 0) {
    return nullptr;
  }
  int fd = ::memfd_create("distgrad-arena", MFD_CLOEXEC);
  if (fd < 0) {
    return nullptr;
  }
  if (::ftruncate(fd, static_cast<off_t>(size)) != 0) {
    ::close(fd);
    return nullptr;
  }
  void* base = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) {
    ::close(fd);
    return nullptr;
  }
  ArenaInfo info;
  info.pid = static_cast<int32_t>(::getpid());
  info.fd = fd;
  info.size = size;
  std::random_device random;
  for (auto& byte : info.token) {
    byte = static_cast<uint8_t>(random());
  }
  // The first page holds the token peers check; regions come after it.
  std::memcpy(base, info.token.data(), info.token.size());
  std::unique_ptr<LocalArena> arena(new LocalArena(info, static_cast<char*>(base)));
  arena->free_.emplace(kRegionAlignment, size - kRegionAlignment);
  return arena;
}

LocalArena::~LocalArena() {
  ::munmap(base_, info_.size);
  ::close(info_.fd);
}

std::optional<uint64_t> LocalArena::allocate(uint64_t nbytes, int peer) {
  uint64_t size = roundUp(nbytes);
  std::lock_guard<std::mutex> lock(mu_);
  return take(lock, size, Region{size, peer});
}

std::optional<uint64_t> LocalArena::allocateLendable(uint64_t nbytes) {
  Region region{roundUp(nbytes), -1, /*peer_holds=*/false, /*local_holds=*/1, /*lendable=*/true};
  std::lock_guard<std::mutex> lock(mu_);
  return take(lock, region.size, region);
}

std::optional<uint64_t> LocalArena::allocateLocal(uint64_t nbytes) {
  Region region{roundUp(nbytes), -1, /*peer_holds=*/false, /*local_holds=*/1};
  region.local_copy = true;
  std::lock_guard<std::mutex> lock(mu_);
  if (local_copy_bytes_ + region.size > info_.size / 2) {
    return std::nullopt;
  }
  auto offset = take(lock, region.size, region);
  if (offset) {
    local_copy_bytes_ += region.size;
  }
  return offset;
}

std::optional<uint64_t> LocalArena::take(const std::lock_guard<std::mutex>& /*held*/, uint64_t size,
                                         Region region) {
  // First fit: the lowest free offsets are reused first, so their pages
  // stay warm in both processes.
  for (auto it = free_.begin(); it != free_.end(); ++it) {
    if (it->second < size) {
      continue;
    }
    uint64_t offset = it->first;
    uint64_t left = it->second - size;
    free_.erase(it);
    if (left > 0) {
      free_.emplace(offset + size, left);
    }
    used_.emplace(offset, region);
    return offset;
  }
  return std::nullopt;
}

bool LocalArena::lend(uint64_t offset, uint64_t nbytes, int peer) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = used_.find(offset);
  if (it == used_.end() || !it->second.lendable || nbytes > it->second.size) {
    return false;
  }
  it->second.lendable = false;
  it->second.peer = peer;
  it->second.peer_holds = true;
  ++num_lends_;
  return true;
}

void LocalArena::release(uint64_t offset, int peer) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = used_.find(offset);
  if (it == used_.end() || it->second.peer != peer || !it->second.peer_holds) {
    return;
  }
  it->second.peer_holds = false;
  freeIfUnheld(it);
}

void LocalArena::releaseAll(int peer) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = used_.begin(); it != used_.end();) {
    auto next = std::next(it);
    if (it->second.peer == peer) {
      it->second.peer_holds = false;
      freeIfUnheld(it);
    }
    it = next;
  }
}

std::optional<uint64_t> LocalArena::retainReturned(uint64_t offset, uint64_t nbytes, int peer) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = used_.upper_bound(offset);
  if (it == used_.begin()) {
    return std::nullopt;
  }
  --it;
  Region& region = it->second;
  if (region.peer != peer || !region.peer_holds || offset - it->first > region.size ||
      nbytes > region.size - (offset - it->first)) {
    return std::nullopt;
  }
  ++region.local_holds;
  return it->first;
}

void LocalArena::releaseLocal(uint64_t region) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = used_.find(region);
  if (it != used_.end() && it->second.local_holds > 0) {
    --it->second.local_holds;
    freeIfUnheld(it);
  }
}

uint64_t LocalArena::bytesInUse() const {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t total = 0;
  for (const auto& [offset, region] : used_) {
    total += region.size;
  }
  return total;
}

uint64_t LocalArena::numLends() const {
  std::lock_guard<std::mutex> lock(mu_);
  return num_lends_;
}

void LocalArena::freeIfUnheld(std::map<uint64_t, Region>::iterator it) {
  if (!it->second.peer_holds && it->second.local_holds == 0) {
    if (it->second.local_copy) {
      local_copy_bytes_ -= it->second.size;
    }
    freeRegion(it->first, it->second.size);
    used_.erase(it);
  }
}

void LocalArena::freeRegion(uint64_t offset, uint64_t size) {
  auto next = free_.lower_bound(offset);
  if (next != free_.end() && offset + size == next->first) {
    size += next->second;
    next = free_.erase(next);
  }
  if (next != free_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second == offset) {
      prev->second += size;
      return;
    }
  }
  free_.emplace(offset, size);
}

std::shared_ptr<PeerArena> PeerArena::open(const ArenaInfo& info) {
  if (!info.present()) {
    return nullptr;
  }
  std::string path = "/proc/" + std::to_string(info.pid) + "/fd/" + std::to_string(info.fd);
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    return nullptr;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || static_cast<uint64_t>(st.st_size) != info.size) {
    ::close(fd);
    return nullptr;
  }
  void* base = ::mmap(nullptr, info.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);
  if (base == MAP_FAILED) {
    return nullptr;
  }
  if (std::memcmp(base, info.token.data(), info.token.size()) != 0) {
    ::munmap(base, info.size);
    return nullptr;
  }
  return std::shared_ptr<PeerArena>(new PeerArena(static_cast<char*>(base), info.size));
}

PeerArena::~PeerArena() {
  ::munmap(base_, size_);
}

}  // namespace distgrad::transport
