#include "transport/acceptor.h"

#include "common/errors.h"
#include "common/log.h"
#include "common/thread_role.h"
#include "transport/frame.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

namespace distgrad::transport {

namespace {

using Clock = std::chrono::steady_clock;

// Handshake frames are small; anything larger is not a peer of ours.
constexpr size_t kMaxHandshakeMeta = 4096;
// How long accepting pauses when file descriptors run out.
constexpr auto kPauseWhenOutOfFds = std::chrono::milliseconds(100);

std::string addressOf(const sockaddr_in& addr) {
  char host[INET_ADDRSTRLEN] = {0};
  ::inet_ntop(AF_INET, &addr.sin_addr, host, sizeof(host));
  return std::string(host) + ":" + std::to_string(ntohs(addr.sin_port));
}

void setBlocking(int fd, bool blocking) {
  int flags = ::fcntl(fd, F_GETFL, 0);
  ::fcntl(fd, F_SETFL, blocking ? (flags & ~O_NONBLOCK) : (flags | O_NONBLOCK));
}

// Writes a small frame to a non-blocking socket whose buffer is empty; a
// peer that does not read is dropped rather than waited for.
void sendFrame(int fd, const Message& message) {
  FrameHeader header;
  header.type = message.type;
  header.id = message.id;
  header.meta_len = static_cast<uint32_t>(message.meta.size());
  std::string bytes(FrameHeader::kSize, '\0');
  header.encode(bytes.data());
  bytes += message.meta;
  ssize_t written = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  if (written != static_cast<ssize_t>(bytes.size())) {
    throw std::runtime_error(std::string("cannot send its handshake: ") +
                             (written < 0 ? std::strerror(errno) : "socket buffer full"));
  }
}

}  // namespace

Acceptor::Acceptor(Options options, OnAuthenticated on_authenticated, OnTick on_tick)
    : options_(std::move(options)),
      on_authenticated_(std::move(on_authenticated)),
      on_tick_(std::move(on_tick)) {}

Acceptor::~Acceptor() {
  close();
}

int Acceptor::listen(const std::string& host) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (listen_fd_ < 0) {
    throw DistNetworkError(std::string("socket: ") + std::strerror(errno));
  }
  int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  if (::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    addrinfo hints{};
    hints.ai_family = AF_INET;
    addrinfo* result = nullptr;
    if (::getaddrinfo(host.c_str(), nullptr, &hints, &result) != 0 || result == nullptr) {
      throw DistNetworkError("cannot listen on " + host + ": unknown address");
    }
    addr.sin_addr = reinterpret_cast<sockaddr_in*>(result->ai_addr)->sin_addr;
    ::freeaddrinfo(result);
  }
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::listen(listen_fd_, 128) != 0) {
    throw DistNetworkError("cannot listen on " + host + ": " + std::strerror(errno));
  }
  socklen_t len = sizeof(addr);
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  if (::pipe2(wake_fds_, O_CLOEXEC | O_NONBLOCK) != 0) {
    throw DistNetworkError(std::string("pipe: ") + std::strerror(errno));
  }
  thread_ = std::thread([this] { loop(); });
  return ntohs(addr.sin_port);
}

void Acceptor::close() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) {
      return;
    }
    closed_ = true;
  }
  if (wake_fds_[1] >= 0) {
    char byte = 1;
    (void)::write(wake_fds_[1], &byte, 1);
  }
  if (thread_.joinable()) {
    thread_.join();
  }
  for (int* fd : {&listen_fd_, &wake_fds_[0], &wake_fds_[1]}) {
    if (*fd >= 0) {
      ::close(*fd);
      *fd = -1;
    }
  }
}

void Acceptor::loop() {
  setCurrentThreadRole(ThreadRole::kAcceptor);
  std::vector<pollfd> fds;
  while (true) {
    auto now = Clock::now();
    for (auto it = pending_.begin(); it != pending_.end();) {
      if (now >= it->deadline) {
        drop(*it, "its handshake did not finish in time");
        it = pending_.erase(it);
      } else {
        ++it;
      }
    }
    bool accepting = now >= paused_until_;
    auto wake_at = now + std::chrono::seconds(1);
    if (!accepting) {
      wake_at = std::min(wake_at, paused_until_);
    }
    for (const auto& p : pending_) {
      wake_at = std::min(wake_at, p.deadline);
    }
    fds.clear();
    fds.push_back({wake_fds_[0], POLLIN, 0});
    fds.push_back({accepting ? listen_fd_ : -1, POLLIN, 0});
    for (const auto& p : pending_) {
      fds.push_back({p.fd, POLLIN, 0});
    }
    auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(wake_at - now).count();
    int ready = ::poll(fds.data(), fds.size(), static_cast<int>(std::max<int64_t>(wait, 0)) + 1);
    if (ready < 0 && errno != EINTR) {
      logWarning(options_.name, std::string("poll failed: ") + std::strerror(errno));
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (closed_) {
        break;
      }
    }
    if (ready > 0) {
      size_t i = 2;
      for (auto it = pending_.begin(); it != pending_.end(); ++i) {
        if ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) && !advance(*it)) {
          it = pending_.erase(it);
        } else {
          ++it;
        }
      }
      if (fds[1].revents & POLLIN) {
        acceptAll();
      }
    }
    on_tick_();
  }
  for (auto& p : pending_) {
    ::close(p.fd);
  }
  pending_.clear();
}

void Acceptor::acceptAll() {
  while (true) {
    sockaddr_in addr{};
    socklen_t len = sizeof(addr);
    int fd = ::accept4(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len,
                       SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        logWarning(options_.name, std::string("cannot accept connections for a moment: ") +
                                      std::strerror(errno));
        paused_until_ = Clock::now() + kPauseWhenOutOfFds;
      } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
                 errno != ECONNABORTED) {
        logWarning(options_.name, std::string("accept failed: ") + std::strerror(errno));
      }
      return;
    }
    if (pending_.size() >= kMaxPending) {
      drop(pending_.front(), "too many handshakes under way");
      pending_.pop_front();
    }
    Pending p;
    p.fd = fd;
    p.address = addressOf(addr);
    p.deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                    std::chrono::duration<double>(options_.handshake_timeout_seconds));
    pending_.push_back(std::move(p));
  }
}

bool Acceptor::nextFrame(Pending& pending, Message& frame) {
  if (pending.received.size() < FrameHeader::kSize) {
    return false;
  }
  FrameHeader header = FrameHeader::decode(pending.received.data());
  FrameLimits limits;
  limits.max_meta_bytes = kMaxHandshakeMeta;
  limits.max_data_bytes = 0;
  validateHeader(header, limits);
  if (header.desc_len != 0) {
    throw std::runtime_error("a handshake frame carries no tensors");
  }
  size_t size = FrameHeader::kSize + header.meta_len;
  if (pending.received.size() < size) {
    return false;
  }
  frame.type = header.type;
  frame.id = header.id;
  frame.meta = pending.received.substr(FrameHeader::kSize, header.meta_len);
  pending.received.erase(0, size);
  return true;
}

bool Acceptor::advance(Pending& pending) {
  try {
    char buffer[FrameHeader::kSize + kMaxHandshakeMeta];
    ssize_t got = ::recv(pending.fd, buffer, sizeof(buffer), MSG_DONTWAIT);
    if (got == 0) {
      throw std::runtime_error("closed before its handshake");
    }
    if (got < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
        return true;
      }
      throw std::runtime_error(std::string("receive failed: ") + std::strerror(errno));
    }
    pending.received.append(buffer, static_cast<size_t>(got));
    Message frame;
    while (nextFrame(pending, frame)) {
      if (!pending.got_hello) {
        Hello hello = decodeHello(frame, options_.world_size);
        pending.rank = hello.rank;
        pending.connector_nonce = hello.nonce;
        pending.acceptor_nonce = makeNonce();
        sendFrame(pending.fd, encodeChallenge(options_.rank, pending.acceptor_nonce, options_.auth,
                                              pending.rank, pending.connector_nonce));
        pending.got_hello = true;
        continue;
      }
      Proof proof = decodeProof(frame, options_.auth, pending.rank, options_.rank,
                                pending.connector_nonce, pending.acceptor_nonce);
      if (!pending.received.empty()) {
        throw std::runtime_error("it sent more before being accepted");
      }
      int fd = pending.fd;
      pending.fd = -1;
      setBlocking(fd, true);
      on_authenticated_(fd, pending.address, pending.rank, proof);
      return false;
    }
    return true;
  } catch (const std::exception& e) {
    drop(pending, e.what());
    return false;
  }
}

void Acceptor::drop(Pending& pending, const std::string& reason) {
  logWarning(options_.name, "dropped connection from " + pending.address + ": " + reason);
  if (pending.fd >= 0) {
    ::close(pending.fd);
    pending.fd = -1;
  }
}

}  // namespace distgrad::transport
