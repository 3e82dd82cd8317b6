#pragma once

#include "transport/arena_channel.h"
#include "transport/frame.h"
#include "transport/message.h"
#include "transport/poll_window.h"
#include "transport/shared_arena.h"

#include <atomic>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

namespace distgrad::transport {

// Thrown by Connection::receive when a receive timeout set with
// setReceiveTimeout passes.
class ReceiveTimeout : public std::runtime_error {
 public:
  ReceiveTimeout() : std::runtime_error("timed out waiting for data") {}
};

// One TCP socket carrying frames in both directions.
//
// Threading: send() may be called from any thread; frames are written whole,
// one at a time, under write_mu_. receive() is called by exactly one thread
// (the connection's reader). close() may be called from any thread and makes
// a blocked receive() or send() return with an error.
class Connection {
 public:
  // Whether the reader may poll the socket before blocking, given the type
  // of the last frame it received (0 before the first); asked at every poll,
  // null: always. Polling saves the wakeup of a blocking read, but only pays
  // when a frame is due and no other thread of ours needs the CPU; the
  // reader blocks once the gate has refused for 20 µs on end, or once its
  // PollWindow has passed.
  using PollGate = std::function<bool(uint16_t last_type)>;

  // Takes ownership of a connected socket and sets TCP_NODELAY on it.
  Connection(int fd, std::string peer_address, PollGate may_poll = nullptr);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Writes one frame. Throws std::runtime_error (with strerror text) when the
  // socket fails; the connection is then unusable.
  void send(const Message& message);

  // Writes a frame without tensors only if it can start at once: returns
  // false, having written nothing, while another thread writes a frame or
  // the socket takes no byte. Once started, finishes it as send() does
  // (same errors).
  bool trySend(const Message& message);

  // Reads one frame into message. Returns false on a clean end of stream at
  // a frame boundary; throws std::runtime_error on a malformed frame (bad
  // magic/version, inconsistent or oversized lengths), a socket error, or an
  // end of stream inside a frame.
  bool receive(Message& message, const FrameLimits& limits);

  // Bounds how long receive() may block (0 = forever); used during handshake.
  void setReceiveTimeout(double seconds);
  // After the handshake: receive() waits for a frame as long as it takes,
  // but once a frame has started, a wait of more than seconds for its next
  // bytes fails it (a peer that stalls mid-frame does not hold the reader
  // forever). 0: no bound.
  void setFrameStallTimeout(double seconds);

  // What the peer accepts (announced in the handshake; set before use).
  void setPeerLimits(const FrameLimits& limits) { peer_limits_ = limits; }
  const FrameLimits& peerLimits() const { return peer_limits_; }

  // Where large tensors travel when the peer shares this machine; set up
  // during the handshake, before frames flow.
  ArenaChannel& arena() { return arena_; }

  // Shuts the socket down in both directions. Idempotent.
  void close();

  const std::string& peerAddress() const { return peer_address_; }

  // How long the reader polls now (see PollWindow).
  std::chrono::microseconds pollWindow() const { return poll_window_.current(); }

 private:
  // Reads exactly n bytes; returns false if the stream ended before the first
  // byte and may_end is true. Small reads are served from read_buffer_, so
  // that a small frame costs one recv() rather than one per part; large
  // ones go straight to their destination.
  bool readExact(char* data, size_t n, bool may_end);
  // One read of at most n bytes into data, through read_buffer_ for small
  // reads; returns the byte count (0 at end of stream).
  size_t receiveSome(char* data, size_t n);
  // One recv() into data; returns the byte count (0 at end of stream).
  size_t recvSome(char* data, size_t n);
  // Writes the frame under write_mu_; returns false, having written nothing,
  // if !may_wait_to_start and the lock or the socket is not free now.
  bool writeFrame(const Message& message, const std::vector<TensorPlacement>& placements,
                  bool may_wait_to_start);

  const int fd_;
  const std::string peer_address_;
  const PollGate may_poll_;
  uint16_t last_type_ = 0;  // of the last frame received; only the reader touches it
  PollWindow poll_window_;  // only the reader touches it
  FrameLimits peer_limits_;
  double frame_stall_timeout_seconds_ = 0;  // see setFrameStallTimeout
  std::mutex write_mu_;  // serializes whole frames written by send()
  std::atomic<bool> closed_{false};
  ArenaChannel arena_;
  // Bytes received but not consumed yet; only the reader thread touches them.
  std::vector<char> read_buffer_;
  size_t read_begin_ = 0;
  size_t read_end_ = 0;
};

}  // namespace distgrad::transport
