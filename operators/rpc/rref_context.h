#pragma once

#include "rpc/rref.h"

#include <ATen/core/ivalue.h>

#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace distgrad::rpc {

class Agent;

// What a remote() request asks its callee to keep: the RRef's id and the
// fork the caller holds (kNoFork when the caller is the owner itself).
struct RemoteTarget {
  int64_t rref_id = 0;
  int64_t fork_id = 0;
};

// The RRefs of one agent: the values this worker owns and which forks of
// them exist, the forks this worker holds, and the protocol that keeps an
// owner's value alive exactly as long as a fork of it exists anywhere.
//
// Ids are (rank << 48) + a counter, unique in the job. Every RRef that
// crosses an RPC message travels out of band in the message's RRef table
// (see rref_pickling.h) as a fork state (owner, rref id, fork id):
//
// - to its owner: no new fork (kNoFork); the owner resolves it by id when it
//   decodes the message, on the reader thread, before any later release
//   notice from the same sender (frames of a connection are read in order);
// - to anyone else: a new fork for that receiver. An owner registers it at
//   once. A user sends the owner an add-fork request and keeps its own fork
//   alive until the owner has answered, so the owner cannot drop the value
//   in between; if the receiver's release overtakes the add-fork request,
//   the owner remembers the release and ignores the add.
//
// Every fork state of a received message is adopted when the message is
// decoded, even if the rest of the message fails to decode, so no fork is
// lost. An owner drops the forks of a worker that is lost.
//
// Threading: every method is safe from any thread; mu_ guards the tables.
// Nothing that may destroy a UserRRef runs with mu_ held (its destructor
// comes back here).
class RRefContext {
 public:
  static constexpr int64_t kNoFork = -1;

  explicit RRefContext(Agent& agent);

  // Registers the internal request handlers with the agent.
  void install();

  // A new owner RRef of value, made on this worker (RRef(value)).
  RRefPtr createOwned(c10::IValue value);

  // remote(): the reference the caller keeps and what the request carries.
  // finishRemote() is then given the call's future (null if the call could
  // not be made); it confirms or fails the reference.
  std::pair<RRefPtr, RemoteTarget> prepareRemote(int dst);
  void finishRemote(const RRefPtr& rref, const FuturePtr& call);

  // On the owner, when a remote() request is decoded: the value will be set
  // by setValue once the call has run.
  void expectValue(const RemoteTarget& target, int src);
  void setValue(int64_t rref_id, const FuturePtr& result);

  // On the owner: the value of rref_id, for a to_here() from another worker.
  FuturePtr ownerValue(int64_t rref_id);

  // Fork states for the RRefs of a message to dst, registering new forks.
  std::vector<c10::IValue> fork(const std::vector<RRefPtr>& rrefs, int dst);
  // The message carrying states was not sent: drops their forks.
  void abortForks(const std::vector<c10::IValue>& states);
  // The RRefs of a message from src, from its fork states. Throws for a
  // malformed state or an RRef this owner no longer holds (after adopting
  // the others, which are released when dropped).
  std::vector<RRefPtr> adopt(const std::vector<c10::IValue>& states, int src);

  // Called by UserRRef::release: forgets it, and tells the owner.
  void forgetUser(const UserRRef& user, bool notify_owner);

  // Drops the forks held by a lost worker.
  void onPeerLost(int rank);
  // Graceful shutdown: releases every fork this worker holds.
  void releaseUsers();
  // Shutdown: drops everything.
  void clear();

  // num_owner_rrefs (values alive here), num_user_rrefs (forks held here),
  // num_forks (forks of values owned here, known to be held elsewhere),
  // num_pending_forks (forks sent on by this worker not yet confirmed by
  // their owner).
  std::vector<std::pair<std::string, int64_t>> debugInfo() const;

  int64_t newId();

 private:
  struct OwnerEntry {
    std::shared_ptr<OwnerRRef> rref;
    std::unordered_map<int64_t, int> forks;  // fork id -> holder rank
    bool creation_pending = false;
    // Set where a use overtook the remote() that creates the value; cleared
    // when that request arrives. If its creator is lost first, it never will.
    bool awaiting_request = false;
  };

  // With mu_ held (held is checked to be a lock of mu_): the entry of
  // rref_id, created if missing.
  OwnerEntry& entryLocked(const std::unique_lock<std::mutex>& held, int64_t rref_id);
  // With mu_ held (checked likewise): erases the entry if nothing keeps it,
  // and returns its value for drop() (never destroyed with mu_ held).
  std::shared_ptr<OwnerRRef> maybeEraseLocked(const std::unique_lock<std::mutex>& held,
                                              int64_t rref_id);
  // Destroys an erased value: here if that only frees memory, else on the
  // pool. Never with mu_ held.
  void drop(std::shared_ptr<OwnerRRef> owner);
  void addFork(int64_t rref_id, int64_t fork_id, int holder);
  void removeFork(int64_t rref_id, int64_t fork_id);
  RRefPtr makeUser(int owner, int64_t rref_id, int64_t fork_id, FuturePtr created);

  Agent& agent_;

  mutable std::mutex mu_;  // guards the members below
  int64_t counter_ = 0;
  std::unordered_map<int64_t, OwnerEntry> owners_;
  // Releases that arrived before the add-fork request of their fork.
  std::unordered_set<int64_t> released_early_;
  // Forks held here, by fork id (for confirmation and shutdown).
  std::unordered_map<int64_t, std::weak_ptr<UserRRef>> users_;
  // Confirmations that arrived before the message carrying their fork.
  std::unordered_set<int64_t> confirmed_early_;
  int64_t pending_forks_ = 0;
};

}  // namespace distgrad::rpc
