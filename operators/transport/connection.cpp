#include "transport/connection.h"

#include "common/thread_role.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <optional>
#include <thread>
#include <climits>
#include <cmath>
#include <cstring>
#include <stdexcept>

namespace distgrad::transport {

namespace {

std::runtime_error socketError(const char* what) {
  return std::runtime_error(std::string(what) + ": " + std::strerror(errno));
}

constexpr size_t kReadBufferSize = 64 * 1024;

// The reader's wake-up eventfd and an epoll instance watching it and the
// socket fd for input; closes fd and throws if they cannot be made (out of
// file descriptors or memory).
std::pair<int, int> readerWakeupsFor(int fd) {
  int wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  int epoll_fd = ::epoll_create1(EPOLL_CLOEXEC);
  epoll_event event{};
  event.events = EPOLLIN;
  if (wake_fd < 0 || epoll_fd < 0 || ::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &event) != 0 ||
      ::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, wake_fd, &event) != 0) {
    auto error = socketError("cannot watch the connection's socket");
    for (int own : {wake_fd, epoll_fd, fd}) {
      if (own >= 0) {
        ::close(own);
      }
    }
    throw error;
  }
  return {wake_fd, epoll_fd};
}

}  // namespace

Connection::Connection(int fd, std::string peer_address, PollGate may_poll)
    : fd_(fd),
      wakeups_(readerWakeupsFor(fd)),
      peer_address_(std::move(peer_address)),
      may_poll_(std::move(may_poll)) {
  int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

Connection::~Connection() {
  close();
  ::close(wakeups_.epoll_fd);
  ::close(wakeups_.wake_fd);
  ::close(fd_);
}

void Connection::close() {
  if (!closed_.exchange(true)) {
    ::shutdown(fd_, SHUT_RDWR);
  }
}

void Connection::setReceiveTimeout(double seconds) {
  frame_start_timeout_ms_ = seconds > 0 ? static_cast<int>(std::ceil(seconds * 1000)) : -1;
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(seconds);
  tv.tv_usec = static_cast<suseconds_t>((seconds - static_cast<double>(tv.tv_sec)) * 1e6);
  ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

void Connection::setFrameStallTimeout(double seconds) {
  setReceiveTimeout(seconds);
  frame_stall_timeout_seconds_ = seconds;
  frame_start_timeout_ms_ = -1;  // an idle peer may send nothing for as long as it likes
}

void Connection::send(const Message& message) {
  std::vector<TensorPlacement> placements = arena_.place(message.tensors);
  try {
    writeFrame(message, placements, /*may_wait_to_start=*/true);
  } catch (...) {
    arena_.unplace(placements);  // the peer will never see these regions
    throw;
  }
}

bool Connection::trySend(const Message& message) {
  if (!message.tensors.empty()) {
    throw std::logic_error("Connection::trySend() takes messages without tensors");
  }
  return writeFrame(message, {}, /*may_wait_to_start=*/false);
}

bool Connection::writeFrame(const Message& message, const std::vector<TensorPlacement>& placements,
                            bool may_wait_to_start) {
  FrameHeader header;
  header.type = message.type;
  header.id = message.id;
  header.meta_len = static_cast<uint32_t>(message.meta.size());
  std::string descriptors = encodeDescriptors(message.tensors, placements, &header.data_len);
  header.desc_len = static_cast<uint32_t>(descriptors.size());
  char header_bytes[FrameHeader::kSize];
  header.encode(header_bytes);

  // One gather list for the whole frame: tensor bytes go straight from their
  // storage to the socket.
  std::vector<iovec> iov;
  iov.reserve(3 + message.tensors.size());
  auto add = [&](const void* data, size_t len) {
    if (len > 0) {
      iov.push_back({const_cast<void*>(data), len});
    }
  };
  add(header_bytes, sizeof(header_bytes));
  add(message.meta.data(), message.meta.size());
  add(descriptors.data(), descriptors.size());
  for (size_t i = 0; i < message.tensors.size(); ++i) {
    if (i >= placements.size() || placements[i].location == TensorLocation::kInline) {
      add(message.tensors[i].const_data_ptr(), message.tensors[i].nbytes());
    }
  }

  std::unique_lock<std::mutex> lock(write_mu_, std::defer_lock);
  if (may_wait_to_start) {
    lock.lock();
  } else if (!lock.try_lock()) {
    return false;
  }
  bool started = false;
  size_t next = 0;
  while (next < iov.size()) {
    msghdr msg{};
    msg.msg_iov = iov.data() + next;
    msg.msg_iovlen = std::min<size_t>(iov.size() - next, IOV_MAX);
    // Once a byte is out, the frame must be finished: only the start may
    // be refused.
    int flags = MSG_NOSIGNAL | (started || may_wait_to_start ? 0 : MSG_DONTWAIT);
    ssize_t written = ::sendmsg(fd_, &msg, flags);
    if (written < 0) {
      if (errno == EINTR) {
        continue;
      }
      if (!started && !may_wait_to_start && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        return false;
      }
      throw socketError("send failed");
    }
    started = true;
    auto left = static_cast<size_t>(written);
    while (next < iov.size() && left >= iov[next].iov_len) {
      left -= iov[next].iov_len;
      ++next;
    }
    if (left > 0) {
      iov[next].iov_base = static_cast<char*>(iov[next].iov_base) + left;
      iov[next].iov_len -= left;
    }
  }
  return true;
}

bool Connection::mayPollOn(Clock::time_point until,
                           std::optional<Clock::time_point>& refused_since) const {
  // The gate may refuse for a moment before polling stops: a short task of
  // the pool (a small Python call) then ends while the reader polls for the
  // next request.
  constexpr auto kRefusedFor = std::chrono::microseconds(20);
  auto now = Clock::now();
  if (now >= until) {
    return false;
  }
  if (may_poll_ && !may_poll_()) {
    if (!refused_since) {
      refused_since = now;
    } else if (now - *refused_since > kRefusedFor) {
      return false;
    }
  } else {
    refused_since.reset();
  }
  return true;
}

bool Connection::fillAtFrameStart() {
  if (read_begin_ < read_end_) {
    return true;
  }
  if (ended_) {
    return false;
  }
  read_buffer_.resize(kReadBufferSize);
  ssize_t got = ::recv(fd_, read_buffer_.data(), read_buffer_.size(), MSG_DONTWAIT);
  if (got > 0) {
    read_begin_ = 0;
    read_end_ = static_cast<size_t>(got);
    return true;
  }
  if (got == 0) {
    ended_ = true;
    return false;
  }
  if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
    throw socketError("receive failed");
  }
  return false;
}

void Connection::setReaderWakeups(bool on) {
  epoll_event event{};
  event.events = on ? EPOLLIN : 0;
  if (::epoll_ctl(wakeups_.epoll_fd, EPOLL_CTL_MOD, fd_, &event) != 0 && on) {
    // A reader that nothing wakes would never read again: the shutdown
    // still does (a hang-up is always reported), and it reports the end.
    close();
  }
}

std::unique_lock<std::mutex> Connection::awaitFrame() {
  // Replies tend to follow requests within tens of microseconds: polling
  // for a short while before sleeping spares the reader a wakeup, which
  // costs as much as the round trip itself. The baton is taken for each
  // poll only: a thread waiting for a reply may take it in between, and
  // the reader then sleeps (the waiter turned its wakeups off).
  const auto start = Clock::now();
  const auto until = start + poll_window_.current();
  std::optional<Clock::time_point> refused_since;
  bool polling = true;
  while (true) {
    std::unique_lock<std::mutex> baton(read_mu_, std::defer_lock);
    if (polling) {
      polling = baton.try_lock();
    } else {
      baton.lock();
    }
    if (baton) {
      if (read_failure_) {
        std::rethrow_exception(read_failure_);
      }
      if (fillAtFrameStart() || ended_) {
        poll_window_.frameAfter(Clock::now() - start);
        return baton;
      }
      polling = polling && mayPollOn(until, refused_since);
      baton.unlock();
    }
    if (polling) {
      std::this_thread::yield();
      continue;
    }
    epoll_event event{};
    int ready = ::epoll_wait(wakeups_.epoll_fd, &event, 1, frame_start_timeout_ms_);
    if (ready == 0) {
      throw ReceiveTimeout();
    }
    if (ready < 0 && errno != EINTR) {
      throw socketError("receive failed");
    }
    uint64_t wakes;
    (void)!::read(wakeups_.wake_fd, &wakes, sizeof(wakes));  // consumed (nothing if EAGAIN)
  }
}

void Connection::pollFrames(const FrameLimits& limits, const std::function<bool()>& keep_polling,
                            const FrameSink& deliver) {
  std::unique_lock<std::mutex> baton(read_mu_, std::try_to_lock);
  if (!baton || read_failure_ || ended_) {
    return;
  }
  setReaderWakeups(false);
  try {
    auto start = Clock::now();
    auto until = start + poll_window_.current();
    // A peer that keeps sending would keep the waiter reading: it gives the
    // connection back after a while, and waits as before (where a Ctrl-C
    // is seen).
    const auto give_back = start + kMaxWaiterReading;
    std::optional<Clock::time_point> refused_since;
    while (keep_polling() && Clock::now() < give_back) {
      if (fillAtFrameStart()) {
        poll_window_.frameAfter(Clock::now() - start);
        Message message;
        readFrame(message, limits);
        deliver(std::move(message));
        start = Clock::now();
        until = start + poll_window_.current();
        refused_since.reset();
        continue;
      }
      if (ended_ || !mayPollOn(until, refused_since)) {
        break;
      }
      std::this_thread::yield();
    }
  } catch (...) {
    read_failure_ = std::current_exception();  // the reader reports it as its own
  }
  // What the socket no longer shows is the reader's all the same: bytes
  // already read from it, a failure.
  const bool left_to_reader = read_begin_ < read_end_ || read_failure_;
  baton.unlock();
  // Bytes that came meanwhile (or the end of the stream) wake the reader.
  setReaderWakeups(true);
  if (left_to_reader) {
    uint64_t one = 1;
    (void)!::write(wakeups_.wake_fd, &one, sizeof(one));
  }
}

size_t Connection::recvSome(char* data, size_t n) {
  // The rest of a frame: polled for as the frame's start was (a large
  // frame comes in pieces), then waited for.
  const auto until = Clock::now() + poll_window_.current();
  std::optional<Clock::time_point> refused_since;
  while (mayPollOn(until, refused_since)) {
    ssize_t got = ::recv(fd_, data, n, MSG_DONTWAIT);
    if (got >= 0) {
      return static_cast<size_t>(got);
    }
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      throw socketError("receive failed");
    }
    std::this_thread::yield();
  }
  while (true) {
    ssize_t got = ::recv(fd_, data, n, 0);
    if (got >= 0) {
      return static_cast<size_t>(got);
    }
    if (errno == EINTR) {
      continue;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      throw ReceiveTimeout();
    }
    throw socketError("receive failed");
  }
}

void Connection::readExact(char* data, size_t n) {
  size_t done = std::min(n, read_end_ - read_begin_);
  if (done > 0) {
    std::memcpy(data, read_buffer_.data() + read_begin_, done);
    read_begin_ += done;
  }
  while (done < n) {
    size_t got;
    try {
      got = receiveSome(data + done, n - done);
    } catch (const ReceiveTimeout&) {
      if (frame_stall_timeout_seconds_ <= 0) {
        throw;  // a handshake's own deadline
      }
      throw std::runtime_error("peer sent nothing for " +
                               std::to_string(frame_stall_timeout_seconds_) +
                               " seconds in the middle of a frame");
    }
    if (got == 0) {
      ended_ = true;
      throw std::runtime_error("peer closed the connection in the middle of a frame");
    }
    done += got;
  }
}

size_t Connection::receiveSome(char* data, size_t n) {
  if (n >= kReadBufferSize / 2) {
    return recvSome(data, n);
  }
  read_buffer_.resize(kReadBufferSize);
  size_t got = recvSome(read_buffer_.data(), kReadBufferSize);
  read_begin_ = 0;
  read_end_ = got;
  size_t take = std::min(got, n);
  std::memcpy(data, read_buffer_.data(), take);
  read_begin_ = take;
  return take;
}

bool Connection::receive(Message& message, const FrameLimits& limits) {
  auto baton = awaitFrame();
  if (read_begin_ == read_end_) {
    return false;  // the end of the stream, at a frame boundary
  }
  readFrame(message, limits);
  return true;
}

void Connection::readFrames(const FrameLimits& limits, const FrameSink& deliver) {
  checkCalledFrom(ThreadRole::kReader, "Connection::readFrames()");
  while (true) {
    auto baton = awaitFrame();
    if (read_begin_ == read_end_) {
      return;
    }
    Message message;
    readFrame(message, limits);
    deliver(std::move(message));
  }
}

void Connection::readFrame(Message& message, const FrameLimits& limits) {
  char header_bytes[FrameHeader::kSize];
  readExact(header_bytes, sizeof(header_bytes));
  FrameHeader header = FrameHeader::decode(header_bytes);
  validateHeader(header, limits);
  message.type = header.type;
  message.id = header.id;
  // Grown as the bytes arrive: a header claiming more than follows commits
  // no more memory than was received (tensor storage is only reserved, and
  // committed page by page as it is written).
  message.meta.clear();
  constexpr size_t kMetaChunk = 1 << 20;
  while (message.meta.size() < header.meta_len) {
    size_t have = message.meta.size();
    size_t next = std::min<size_t>(header.meta_len, std::max(2 * have, kMetaChunk));
    message.meta.resize(next);
    readExact(message.meta.data() + have, next - have);
  }
  std::string descriptors(header.desc_len, '\0');
  readExact(descriptors.data(), header.desc_len);
  ArenaTensorFactory arena_tensor = [this](TensorLocation location, uint64_t offset,
                                          uint64_t nbytes, c10::IntArrayRef sizes,
                                          c10::ScalarType dtype) {
    return arena_.receive(location, offset, nbytes, sizes, dtype);
  };
  DecodedTensors decoded = allocateFromDescriptors(descriptors, header.data_len, arena_tensor);
  for (size_t i = 0; i < decoded.tensors.size(); ++i) {
    if (decoded.inline_data[i]) {
      auto& t = decoded.tensors[i];
      readExact(static_cast<char*>(t.mutable_data_ptr()), t.nbytes());
    }
  }
  message.tensors = std::move(decoded.tensors);
}

}  // namespace distgrad::transport
