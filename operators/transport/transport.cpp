#include "transport/transport.h"

#include "common/errors.h"
#include "common/log.h"
#include "common/thread_role.h"
#include "transport/acceptor.h"
#include "transport/handshake.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <sstream>

namespace distgrad::transport {

namespace {

// Handshake frames are tiny; anything larger is not a peer of ours.
FrameLimits handshakeLimits() {
  FrameLimits limits;
  limits.max_meta_bytes = 4096;
  limits.max_data_bytes = 0;
  return limits;
}


std::string secondsText(double seconds) {
  std::ostringstream out;
  out << seconds;
  return out.str();
}

sockaddr_in resolve(const std::string& address) {
  auto colon = address.rfind(':');
  if (colon == std::string::npos) {
    throw DistError("bad worker address '" + address + "'");
  }
  std::string host = address.substr(0, colon);
  std::string port = address.substr(colon + 1);
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* result = nullptr;
  int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &result);
  if (rc != 0 || result == nullptr) {
    throw DistNetworkError("cannot resolve '" + address + "': " + ::gai_strerror(rc));
  }
  sockaddr_in addr = *reinterpret_cast<sockaddr_in*>(result->ai_addr);
  ::freeaddrinfo(result);
  return addr;
}

}  // namespace

Transport::Transport(TransportOptions options, MessageHandler on_message,
                     PeerLostHandler on_peer_lost)
    : options_(std::move(options)),
      on_message_(std::move(on_message)),
      on_peer_lost_(std::move(on_peer_lost)),
      arena_(options_.arena_bytes > 0 ? LocalArena::create(options_.arena_bytes) : nullptr) {
  for (int r = 0; r < options_.world_size; ++r) {
    peers_.push_back(std::make_unique<Peer>());
  }
}

Transport::~Transport() {
  close();
}

int Transport::listen(const std::string& host) {
  Acceptor::Options options;
  options.rank = options_.rank;
  options.world_size = options_.world_size;
  options.name = options_.name;
  options.auth = options_.auth;
  options.handshake_timeout_seconds = options_.handshake_timeout_seconds;
  acceptor_ = std::make_unique<Acceptor>(
      options,
      [this](int fd, const std::string& address, int rank, const Proof& proof) {
        onAuthenticated(fd, address, rank, proof);
      },
      [this] { reapFinishedReaders(); });
  return acceptor_->listen(host);
}

void Transport::onAuthenticated(int fd, const std::string& address, int rank,
                                const Proof& proof) {
  checkCalledFrom(ThreadRole::kAcceptor, "Transport::onAuthenticated()");
  auto conn = std::make_shared<Connection>(fd, address, pollGateFor(rank));
  try {
    conn->setPeerLimits(proof.limits);
    conn->setFrameStallTimeout(options_.frame_stall_timeout_seconds);
    conn->arena().setOwnArena(arena_, rank);
    bool mapped = mapPeerArena(conn, proof.arena);
    conn->send(encodeAccept(options_.rank, options_.limits,
                            arena_ ? arena_->info() : ArenaInfo(), mapped));
  } catch (const std::exception& e) {
    logWarning(options_.name, "dropped connection from " + address + ": " + e.what());
    conn->close();
    return;
  }
  startReader(std::move(conn), rank, /*adopt=*/true);
}

void Transport::setPeers(std::vector<std::string> names, std::vector<std::string> addresses) {
  names_ = std::move(names);
  addresses_ = std::move(addresses);
}

std::string Transport::describe(int rank) const {
  std::string name = rank >= 0 && rank < static_cast<int>(names_.size()) ? names_[rank] : "?";
  return "worker '" + name + "' (rank " + std::to_string(rank) + ")";
}

void Transport::send(int rank, const Message& message) {
  auto conn = connectionTo(rank);
  try {
    conn->send(message);
  } catch (const std::runtime_error& e) {
    sendFailed(rank, *conn, e);
  }
}

at::Tensor Transport::emptyLendable(int rank, c10::IntArrayRef sizes, c10::ScalarType dtype) {
  std::shared_ptr<Connection> conn;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (rank < 0 || rank >= static_cast<int>(peers_.size()) || closing_) {
      return {};
    }
    conn = peers_[rank]->conn;
  }
  return conn ? conn->arena().emptyLendable(sizes, dtype) : at::Tensor();
}

void Transport::sendFailed(int rank, Connection& conn, const std::runtime_error& error) {
  conn.close();  // its reader reports the loss to on_peer_lost
  throw DistNetworkError("cannot send to " + describe(rank) + ": " + error.what());
}

bool Transport::trySend(int rank, const Message& message) {
  std::shared_ptr<Connection> conn;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Peer& peer = *peers_.at(rank);
    if (closing_ || peer.lost || !peer.conn) {
      return false;
    }
    conn = peer.conn;
  }
  try {
    return conn->trySend(message);
  } catch (const std::runtime_error& e) {
    sendFailed(rank, *conn, e);
  }
}

std::shared_ptr<Connection> Transport::connectionTo(int rank) {
  Peer& peer = *peers_.at(rank);
  auto usable = [&]() -> std::shared_ptr<Connection> {
    std::lock_guard<std::mutex> lock(mu_);
    if (closing_) {
      throw DistNetworkError("this worker has shut down its RPC connections");
    }
    if (peer.lost) {
      throw DistNetworkError(peer.lost_reason);
    }
    return peer.conn;
  };
  if (auto conn = usable()) {
    return conn;
  }
  std::string unreachable;
  {
    std::lock_guard<std::mutex> connecting(peer.connect_mu);
    if (auto conn = usable()) {
      return conn;
    }
    std::shared_ptr<Connection> conn;
    try {
      conn = connect(rank);
    } catch (const DistNetworkError& e) {
      // Its address was published at rendezvous: a worker we cannot reach
      // (refused, or failing the handshake) is gone. One that is only slow
      // (DistTimeoutError) is not.
      unreachable = e.what();
    }
    if (conn) {
      if (!adopt(rank, conn)) {
        conn->close();
        return usable();  // throws: the peer was lost meanwhile
      }
      if (!startReader(conn, rank, /*adopt=*/false)) {
        std::lock_guard<std::mutex> lock(mu_);
        if (peer.conn == conn) {
          peer.conn.reset();
        }
        throw DistNetworkError("cannot read from " + describe(rank) +
                               ": no thread for its connection");
      }
      std::lock_guard<std::mutex> lock(mu_);
      return peer.conn;
    }
  }
  // Not under connect_mu: peerFailed runs the on_peer_lost callback.
  peerFailed(rank, unreachable);
  throw DistNetworkError(unreachable);
}

Connection::PollGate Transport::pollGateFor(int rank) const {
  if (!options_.may_poll) {
    return nullptr;
  }
  return [gate = options_.may_poll, rank] { return gate(rank); };
}

std::shared_ptr<Connection> Transport::connect(int rank) {
  const std::string& address = addresses_.at(rank);
  sockaddr_in addr = resolve(address);
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    throw DistNetworkError(std::string("socket: ") + std::strerror(errno));
  }
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(options_.connect_timeout_seconds);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    int error = errno;
    ::close(fd);
    std::string what = "cannot connect to " + describe(rank) + " at " + address + ": ";
    if (error == EINPROGRESS || error == ETIMEDOUT || error == EAGAIN) {
      // Slow, not gone: this call fails, a later one tries again.
      throw DistTimeoutError(what + "no answer within " + secondsText(options_.connect_timeout_seconds) +
                             " seconds");
    }
    throw DistNetworkError(what + std::strerror(error));
  }
  timeval no_timeout{};
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &no_timeout, sizeof(no_timeout));
  auto conn = std::make_shared<Connection>(fd, address, pollGateFor(rank));
  try {
    std::string nonce = makeNonce();
    conn->send(encodeHello(options_.rank, nonce));
    conn->setReceiveTimeout(options_.handshake_timeout_seconds);
    Message reply;
    if (!conn->receive(reply, handshakeLimits())) {
      throw std::runtime_error("it closed the connection");
    }
    std::string peer_nonce = decodeChallenge(reply, options_.auth, rank, options_.rank, nonce);
    conn->send(encodeProof(options_.rank, options_.auth, rank, nonce, peer_nonce, options_.limits,
                           arena_ ? arena_->info() : ArenaInfo()));
    if (!conn->receive(reply, handshakeLimits())) {
      throw std::runtime_error("it closed the connection (does it share our job key?)");
    }
    Accept accept = decodeAccept(reply);
    if (accept.rank != rank) {
      throw std::runtime_error("it answered as rank " + std::to_string(accept.rank));
    }
    conn->setPeerLimits(accept.limits);
    conn->setFrameStallTimeout(options_.frame_stall_timeout_seconds);
    conn->arena().setOwnArena(arena_, rank);
    conn->send(encodeArenaReady(mapPeerArena(conn, accept.arena)));
    if (accept.mapped_your_arena) {
      conn->arena().enableSends();
    }
  } catch (const ReceiveTimeout&) {
    // A peer slow to answer (stopped, overloaded) is not lost: this call
    // fails, a later one tries again.
    throw DistTimeoutError("handshake with " + describe(rank) + " at " + address +
                           " got no answer within " +
                           secondsText(options_.handshake_timeout_seconds) + " seconds");
  } catch (const std::runtime_error& e) {
    throw DistNetworkError("handshake with " + describe(rank) + " at " + address +
                           " failed: " + e.what());
  }
  return conn;
}

bool Transport::adopt(int rank, const std::shared_ptr<Connection>& conn) {
  std::lock_guard<std::mutex> lock(mu_);
  Peer& peer = *peers_.at(rank);
  if (closing_ || peer.lost) {
    return false;
  }
  // If both sides connected at once, the first registered connection carries
  // our sends; the other stays open and is still read.
  if (!peer.conn) {
    peer.conn = conn;
  }
  return true;
}

bool Transport::startReader(std::shared_ptr<Connection> conn, int rank, bool adopt_first) {
  std::lock_guard<std::mutex> lock(mu_);
  if (closing_) {
    conn->close();
    return false;
  }
  auto reader = std::make_shared<Reader>();
  Reader* raw = reader.get();
  reader->conn = conn;
  try {
    reader->thread = std::thread([this, raw, rank, adopt_first] { readLoop(raw, rank, adopt_first); });
  } catch (const std::system_error& e) {
    // Out of threads: this connection is dropped, the worker carries on.
    logWarning(options_.name, "dropped connection from " + conn->peerAddress() +
                                  ": cannot start its reader thread: " + e.what());
    conn->close();
    return false;
  }
  readers_.push_back(std::move(reader));
  return true;
}

void Transport::readLoop(Reader* reader, int rank, bool adopt_first) {
  setCurrentThreadRole(ThreadRole::kReader);
  Connection& conn = *reader->conn;
  std::string failure;
  if (adopt_first && !adopt(rank, reader->conn)) {
    conn.close();
    reader->done = true;
    return;
  }
  // An accepted connection's first frame is the connector's arena ready,
  // which ends its handshake. One that ends before it was given up by the
  // connector (its handshake deadline passed while we were slow, e.g.
  // stopped): the peer itself is not lost.
  if (!adopt_first) {
    reader->handshake_finished = true;
  }
  try {
    conn.readFrames(options_.limits,
                    [this, rank, reader](Message&& message) { deliver(rank, *reader, std::move(message)); });
    failure = "connection closed";
  } catch (const std::exception& e) {
    failure = e.what();
  }
  const bool handshake_finished = reader->handshake_finished;
  bool goodbye;
  bool quiet;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Peer& peer = *peers_[rank];
    if (!handshake_finished && peer.conn == reader->conn) {
      peer.conn.reset();  // a later connection of the peer's takes its place
    }
    // When both sides connected at once, the peer has a second connection:
    // losing the one that does not carry our sends loses nothing.
    quiet = closing_ || !handshake_finished || (peer.conn && peer.conn != reader->conn);
    peer.said_goodbye |= reader->goodbye;
    goodbye = peer.said_goodbye;
  }
  if (!handshake_finished) {
    logWarning(options_.name, "dropped connection from " + conn.peerAddress() + " (" +
                                  describe(rank) + "): it ended its handshake: " + failure);
  } else if (!quiet && !goodbye) {
    logWarning(options_.name, "lost connection to " + describe(rank) + ": " + failure);
  }
  conn.close();
  if (!quiet) {
    peerFailed(rank, goodbye ? describe(rank) + " has shut down"
                             : "connection to " + describe(rank) + " lost: " + failure);
  }
  reader->done = true;
}

void Transport::deliver(int rank, Reader& reader, Message&& message) {
  reader.handshake_finished = true;
  if (message.type == kGoodbye) {
    reader.goodbye = true;
  } else if (message.type >= Message::kFirstUserType) {
    on_message_(rank, std::move(message));
  } else {
    onControlFrame(rank, *reader.conn, message);
  }
}

void Transport::pollFrames(int rank, const std::function<bool()>& keep_polling) {
  std::shared_ptr<Reader> reader;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closing_ || rank < 0 || rank >= static_cast<int>(peers_.size()) || !peers_[rank]->conn) {
      return;
    }
    for (const auto& r : readers_) {
      if (r->conn == peers_[rank]->conn && !r->done) {
        reader = r;
        break;
      }
    }
  }
  if (!reader) {
    return;
  }
  // The frames are handled as on the reader thread, under its rules.
  ThreadRoleScope role(ThreadRole::kReader);
  reader->conn->pollFrames(options_.limits, keep_polling, [this, rank, &reader](Message&& message) {
    deliver(rank, *reader, std::move(message));
  });
}

bool Transport::mapPeerArena(const std::shared_ptr<Connection>& conn, const ArenaInfo& info) {
  auto peer_arena = PeerArena::open(info);
  if (!peer_arena) {
    return false;
  }
  conn->arena().setPeerArena(std::move(peer_arena), releases_.sinkFor(conn));
  return true;
}

void Transport::onControlFrame(int rank, Connection& conn, const Message& message) {
  checkCalledFrom(ThreadRole::kReader, "Transport::onControlFrame()");
  switch (message.type) {
    case kArenaReady:
      if (message.id == 1) {
        conn.arena().enableSends();
      }
      return;
    case kArenaRelease:
      if (arena_) {
        for (uint64_t offset : decodeArenaRelease(message)) {
          arena_->release(offset, rank);
        }
      }
      return;
    default:
      throw std::runtime_error("unexpected control frame type " + std::to_string(message.type));
  }
}

void Transport::peerFailed(int rank, const std::string& reason) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    Peer& peer = *peers_[rank];
    if (peer.lost) {
      return;
    }
    peer.lost = true;
    peer.lost_reason = reason;
    if (peer.conn) {
      peer.conn->close();
      peer.conn.reset();
    }
  }
  if (arena_) {
    arena_->releaseAll(rank);
  }
  on_peer_lost_(rank, reason);
}

void Transport::reapFinishedReaders() {
  std::list<std::shared_ptr<Reader>> finished;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = readers_.begin(); it != readers_.end();) {
      if ((*it)->done) {
        finished.push_back(std::move(*it));
        it = readers_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& reader : finished) {
    reader->thread.join();
  }
}

void Transport::sayGoodbye() {
  std::vector<std::shared_ptr<Connection>> conns;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& reader : readers_) {
      if (!reader->done) {
        conns.push_back(reader->conn);
      }
    }
  }
  Message goodbye;
  goodbye.type = kGoodbye;
  for (auto& conn : conns) {
    try {
      conn->send(goodbye);
    } catch (const std::exception&) {
      // The peer is already gone; nothing to tell it.
    }
  }
}

void Transport::close() {
  std::list<std::shared_ptr<Reader>> readers;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closing_) {
      return;
    }
    // Joining would wait for this thread itself.
    checkNotCalledFrom({ThreadRole::kReader, ThreadRole::kAcceptor}, "Transport::close()");
    closing_ = true;
    readers.swap(readers_);
    for (auto& peer : peers_) {
      peer->conn.reset();
    }
  }
  if (acceptor_) {
    acceptor_->close();
  }
  for (auto& reader : readers) {
    reader->conn->close();
  }
  for (auto& reader : readers) {
    reader->thread.join();
  }
  releases_.close();
}

}  // namespace distgrad::transport
