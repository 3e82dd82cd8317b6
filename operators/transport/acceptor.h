#pragma once

#include "transport/handshake.h"
#include "transport/shared_arena.h"

#include <chrono>
#include <functional>
#include <list>
#include <mutex>
#include <string>
#include <thread>

namespace distgrad::transport {

// Accepts connections and runs the accepting side of their handshakes
// (hello, challenge, proof; see handshake.h) for all of them on one thread,
// with non-blocking sockets: a connection costs no thread until it has
// proven it holds the job key. Each handshake must finish within a deadline
// as a whole, and at most kMaxPending may be under way (the oldest is
// dropped for a new one). Running out of file descriptors (EMFILE, ENFILE)
// pauses accepting for a moment instead of ending it.
//
// Threading: listen() and close() are called by the owner; everything else,
// on_authenticated and on_tick included, runs on the acceptor's thread.
class Acceptor {
 public:
  static constexpr size_t kMaxPending = 64;

  struct Options {
    int rank = 0;
    int world_size = 1;
    std::string name;  // for log lines
    Authenticator auth;
    double handshake_timeout_seconds = 10.0;
  };
  // A connection that proved it holds the job key: fd (blocking again) from
  // address, of worker rank, whose arena is arena. The callee owns fd and
  // sends the accept frame.
  using OnAuthenticated =
      std::function<void(int fd, const std::string& address, int rank, const Proof& proof)>;
  // Called at least once a second (housekeeping of the owner).
  using OnTick = std::function<void()>;

  Acceptor(Options options, OnAuthenticated on_authenticated, OnTick on_tick);
  ~Acceptor();
  Acceptor(const Acceptor&) = delete;
  Acceptor& operator=(const Acceptor&) = delete;

  // Binds host on a free port and starts accepting; returns the port.
  int listen(const std::string& host);

  // Stops accepting, drops the handshakes under way and joins the thread.
  // Idempotent.
  void close();

 private:
  struct Pending {
    int fd = -1;
    std::string address;
    std::chrono::steady_clock::time_point deadline;
    std::string received;  // bytes not consumed yet
    bool got_hello = false;
    int rank = -1;
    std::string connector_nonce;
    std::string acceptor_nonce;
  };

  void loop();
  void acceptAll();
  // Reads what pending has sent and advances its handshake; returns false
  // when the connection is finished with (handed over or dropped).
  bool advance(Pending& pending);
  // The next whole frame of pending, if it has arrived.
  bool nextFrame(Pending& pending, Message& frame);
  void drop(Pending& pending, const std::string& reason);

  const Options options_;
  const OnAuthenticated on_authenticated_;
  const OnTick on_tick_;
  int listen_fd_ = -1;
  int wake_fds_[2] = {-1, -1};  // a pipe: close() writes to wake the loop
  std::thread thread_;
  std::mutex mu_;  // guards closed_
  bool closed_ = false;
  std::list<Pending> pending_;  // only the acceptor's thread touches it
  std::chrono::steady_clock::time_point paused_until_;  // likewise
};

}  // namespace distgrad::transport
