#pragma once

#include "transport/arena_channel.h"
#include "transport/frame.h"
#include "transport/message.h"
#include "transport/poll_window.h"
#include "transport/shared_arena.h"

#include <atomic>
#include <chrono>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
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
// one at a time, under write_mu_. Frames are read by whoever holds the read
// baton (read_mu_): the connection's reader thread (receive, readFrames), or
// for a while a thread waiting for a reply on this connection
// (pollFrames), which saves the reader's wakeup of that thread. close() may
// be called from any thread and makes a blocked read or send() return with
// an error.
class Connection {
 public:
  using FrameSink = std::function<void(Message&& message)>;

  // Whether the reader may poll the socket before blocking; asked at every
  // poll (not when a frame is there already), null: always. Polling saves
  // the wakeup of a blocking read, but only pays when a frame is due and no
  // other thread of ours needs the CPU; the reader blocks once the gate has
  // refused for 20 µs on end, or once its PollWindow has passed.
  using PollGate = std::function<bool()>;

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
  // end of stream inside a frame. For the handshake and for tests: the
  // reader thread uses readFrames.
  bool receive(Message& message, const FrameLimits& limits);

  // The reader thread's loop: reads frames and hands each to deliver, in
  // order, until the stream ends (returns) or fails (throws as receive()
  // does, also what failed while a waiter read; see pollFrames). A frame is
  // delivered with the baton held, so that a frame a waiter reads is
  // delivered after the one before it.
  void readFrames(const FrameLimits& limits, const FrameSink& deliver);

  // For a thread waiting for a reply on this connection: reads frames
  // itself and hands each to deliver (as the reader would, in order) while
  // keep_polling() holds, polling as the reader does (its gate and window),
  // for kMaxWaiterReading at most; returns once any says stop, or at once
  // if the baton is taken (the reader is in a frame). Meanwhile the reader
  // sleeps without being woken by the frames; it is woken for what the
  // waiter leaves it: bytes read but not handled yet, the end of the
  // stream, a read error or an exception of deliver (which end the polling
  // and which the reader reports as its own).
  void pollFrames(const FrameLimits& limits, const std::function<bool()>& keep_polling,
                  const FrameSink& deliver);
  static constexpr std::chrono::milliseconds kMaxWaiterReading{10};

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

  // How long the reader polls now (see PollWindow); for tests, between reads.
  std::chrono::microseconds pollWindow() const { return poll_window_.current(); }

 private:
  using Clock = std::chrono::steady_clock;

  // Waits, polling then sleeping, until a frame's first bytes are buffered
  // or the stream has ended (read_buffer_ empty), and returns the baton
  // held; rethrows what failed while a waiter read. The reader's wait.
  std::unique_lock<std::mutex> awaitFrame();
  // With the baton: whether a frame's bytes are buffered (reading what the
  // socket has now if none are); false if nothing came. Sets ended_ at the
  // end of the stream.
  bool fillAtFrameStart();
  // Whether a reader (or waiter) whose poll window ends at until goes on
  // polling now; refused_since tracks how long the poll gate has refused.
  bool mayPollOn(Clock::time_point until, std::optional<Clock::time_point>& refused_since) const;
  // Whether the reader's sleep in awaitFrame is woken by the socket
  // becoming readable (off while a waiter reads).
  void setReaderWakeups(bool on);
  // With the baton, a frame's first bytes buffered: reads the frame.
  void readFrame(Message& message, const FrameLimits& limits);
  // Reads exactly n bytes. Small reads are served from read_buffer_, so
  // that a small frame costs one recv() rather than one per part; large
  // ones go straight to their destination.
  void readExact(char* data, size_t n);
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
  // Where the reader sleeps between frames (epoll_fd): the socket, whose
  // readiness a waiter turns off while it reads, and wake_fd, an eventfd a
  // waiter writes to when it leaves the reader what the socket does not
  // show (bytes it read, a failure).
  struct ReaderWakeups {
    explicit ReaderWakeups(std::pair<int, int> fds) : wake_fd(fds.first), epoll_fd(fds.second) {}
    const int wake_fd;
    const int epoll_fd;
  };
  const ReaderWakeups wakeups_;
  const std::string peer_address_;
  const PollGate may_poll_;
  // The read baton: held to read (and deliver) a frame, and for a poll.
  std::mutex read_mu_;
  // Guarded by read_mu_:
  PollWindow poll_window_;
  bool ended_ = false;  // the stream has ended
  std::exception_ptr read_failure_;  // what failed while a waiter read
  FrameLimits peer_limits_;
  double frame_stall_timeout_seconds_ = 0;  // see setFrameStallTimeout
  int frame_start_timeout_ms_ = -1;  // how long receive() waits for a frame (-1: forever)
  std::mutex write_mu_;  // serializes whole frames written by send()
  std::atomic<bool> closed_{false};
  ArenaChannel arena_;
  // Bytes received but not consumed yet; guarded by read_mu_.
  std::vector<char> read_buffer_;
  size_t read_begin_ = 0;
  size_t read_end_ = 0;
};

}  // namespace distgrad::transport
