#pragma once

#include "transport/acceptor.h"
#include "transport/arena_releases.h"
#include "transport/connection.h"
#include "transport/message.h"
#include "transport/shared_arena.h"

#include <atomic>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace distgrad::transport {

struct TransportOptions {
  int rank = 0;
  int world_size = 1;
  std::string name;    // this worker's name, for log lines
  Authenticator auth;  // every connection proves it holds the job key
  FrameLimits limits;
  double connect_timeout_seconds = 10.0;
  // Bounds each side's handshake of a new connection as a whole.
  double handshake_timeout_seconds = 10.0;
  // How long a frame that has started may wait for its next bytes before
  // its connection is dropped (see Connection::setFrameStallTimeout).
  double frame_stall_timeout_seconds = 60.0;
  // Size of the shared memory through which large tensors go to peers on
  // the same machine (0: always send inline).
  uint64_t arena_bytes = 0;
  // The poll gate of the connection to peer (see Connection::PollGate).
  std::function<bool(int peer)> may_poll;
};

// TCP connections between the workers of one job: at most one connection per
// pair of workers is opened by each side, lazily, on first send; every
// connection is full duplex and its frames may arrive in either direction.
// Every connection starts with a handshake in which both sides prove they
// hold the job key (see handshake.h); accepted connections are handshaken
// by the Acceptor's single thread and get a reader thread only once
// authenticated.
//
// Threading: each connection has a reader thread that calls on_message for
// every frame it receives, in order, so on_message must not block for long.
// send() is safe from any thread, including inside on_message.
//
// Peers on the same machine that can map each other's memory (same user and
// PID namespace) exchange large tensors through shared memory: the sender
// copies a tensor into its arena, the receiver gets a view of it, and the
// region is reused once the receiver has freed that tensor. Other peers, and
// any tensor that does not fit, travel inline.
//
// Errors: a connection that fails its handshake, breaks framing rules or ends
// mid-frame is closed and logged; if it belonged to a peer, on_peer_lost is
// called once for that peer (on the reader thread, or on the thread that
// failed to connect) and every later send() to it throws DistNetworkError at
// once. Connections that never authenticated affect nobody else.
class Transport {
 public:
  using MessageHandler = std::function<void(int src_rank, Message&& message)>;
  using PeerLostHandler = std::function<void(int rank, const std::string& reason)>;

  Transport(TransportOptions options, MessageHandler on_message, PeerLostHandler on_peer_lost);
  ~Transport();
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;

  // Binds host on a free port, starts accepting, returns the bound port.
  int listen(const std::string& host);

  // Names and "host:port" addresses of all workers, indexed by rank. Must be
  // called before the first send().
  void setPeers(std::vector<std::string> names, std::vector<std::string> addresses);

  // Writes message to rank, connecting first if needed. Blocks until the
  // frame is handed to the kernel. Throws DistNetworkError naming the worker
  // if the peer is unreachable or its connection has failed.
  void send(int rank, const Message& message);

  // Writes a message without tensors to rank only if that needs no wait:
  // a connection is open, no other frame is being written to it, and its
  // socket takes bytes now. Returns false, having sent nothing, otherwise
  // (connecting, a lost peer, a busy connection); errors once the frame has
  // started are send()'s.
  bool trySend(int rank, const Message& message);

  // A tensor for a result to be sent to rank, computed in this worker's
  // arena so that its frame lends it instead of copying it (see
  // ArenaChannel::emptyLendable). Undefined if rank does not share this
  // machine's memory, has no open connection, or the tensor is small.
  at::Tensor emptyLendable(int rank, c10::IntArrayRef sizes, c10::ScalarType dtype);

  // Connects to rank if no connection is open, as send() would (same
  // errors): a worker that is gone is then known to be lost.
  void connectTo(int rank) { connectionTo(rank); }

  // The limits of the messages rank accepts, as it announced them;
  // connects first if needed (same errors as send()).
  FrameLimits peerLimits(int rank) { return connectionTo(rank)->peerLimits(); }

  // Bytes of this worker's arena held by peers (0 without an arena).
  uint64_t sharedMemoryInUse() const { return arena_ ? arena_->bytesInUse() : 0; }
  // Tensors sent from this worker's arena without a copy (emptyLendable).
  uint64_t sharedMemoryLends() const { return arena_ ? arena_->numLends() : 0; }

  // For a thread waiting for a reply from rank: reads the frames of the
  // connection to rank itself while keep_polling() holds and a poll would
  // (see Connection::pollFrames), handling each as the reader would, with
  // the reader's role for the while. Returns at once if there is no open
  // connection or its reader is in a frame.
  void pollFrames(int rank, const std::function<bool()>& keep_polling);

  // Tells every connected peer that this worker is closing its connections.
  void sayGoodbye();

  // Closes every connection and joins every thread. Must not be called from a
  // reader thread (that is, not from on_message or on_peer_lost). Idempotent.
  void close();

 private:
  // options_.may_poll bound to rank: the gate of the connection to rank
  // (null without one).
  Connection::PollGate pollGateFor(int rank) const;

  struct Peer {
    // Held while connecting to this peer. Lock order: connect_mu, then mu_;
    // no callback (on_message, on_peer_lost) runs under either.
    std::mutex connect_mu;
    // The rest is guarded by Transport::mu_.
    std::shared_ptr<Connection> conn;  // used for sends
    bool lost = false;
    bool said_goodbye = false;
    std::string lost_reason;
  };
  struct Reader {
    std::shared_ptr<Connection> conn;
    std::thread thread;
    std::atomic<bool> done{false};
    // Set by whoever delivers a frame: the reader, or a waiter polling.
    std::atomic<bool> handshake_finished{false};
    std::atomic<bool> goodbye{false};
  };

  std::shared_ptr<Connection> connectionTo(int rank);
  std::shared_ptr<Connection> connect(int rank);
  // Called on the acceptor's thread for a connection that authenticated.
  void onAuthenticated(int fd, const std::string& address, int rank, const Proof& proof);
  // Starts conn's reader thread (which first registers conn for rank if
  // adopt_first); returns false, with conn closed, if no thread can be made.
  bool startReader(std::shared_ptr<Connection> conn, int rank, bool adopt_first);
  void readLoop(Reader* reader, int rank, bool adopt_first);
  // Handles a frame read from reader's connection (on the reader thread, or
  // on a waiter's with the baton of the connection).
  void deliver(int rank, Reader& reader, Message&& message);
  // Registers an authenticated connection; returns false if the peer is lost.
  bool adopt(int rank, const std::shared_ptr<Connection>& conn);
  void peerFailed(int rank, const std::string& reason);
  // Joins the threads of readers that have ended (and frees their sockets).
  void reapFinishedReaders();
  std::string describe(int rank) const;
  // A send to rank failed on conn: closes it and throws DistNetworkError.
  [[noreturn]] void sendFailed(int rank, Connection& conn, const std::runtime_error& error);
  // Maps the peer's arena, if possible, for the tensors received on conn.
  bool mapPeerArena(const std::shared_ptr<Connection>& conn, const ArenaInfo& info);
  // Called on the reader thread for control frames after the handshake.
  void onControlFrame(int rank, Connection& conn, const Message& message);

  const TransportOptions options_;
  const MessageHandler on_message_;
  const PeerLostHandler on_peer_lost_;

  std::vector<std::string> names_;      // set once by setPeers, then read-only
  std::vector<std::string> addresses_;  // likewise

  mutable std::mutex mu_;  // guards peers_ state, readers_, closing_
  std::vector<std::unique_ptr<Peer>> peers_;
  std::list<std::shared_ptr<Reader>> readers_;  // shared with waiters polling
  bool closing_ = false;

  std::unique_ptr<Acceptor> acceptor_;

  // Null if disabled or unavailable; shared with the views of its regions
  // that came back from peers.
  const std::shared_ptr<LocalArena> arena_;
  ArenaReleases releases_;
};

}  // namespace distgrad::transport
