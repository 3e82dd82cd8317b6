#pragma once

#include <ATen/core/ivalue.h>  // torch::CustomClassHolder

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

namespace distgrad::rpc {

class Agent;
using FuturePtr = c10::intrusive_ptr<c10::ivalue::Future>;

// A value kept on its owner for the references to it. value() completes
// with the value, or with the error that creating it raised.
//
// Threading: immutable but for the future, which is safe from any thread.
class OwnerRRef {
 public:
  explicit OwnerRRef(int64_t id);
  ~OwnerRRef();
  OwnerRRef(const OwnerRRef&) = delete;
  OwnerRRef& operator=(const OwnerRRef&) = delete;

  int64_t id() const { return id_; }
  const FuturePtr& value() const { return value_; }

  // Live OwnerRRefs in this process.
  static int64_t numLive();

 private:
  const int64_t id_;
  const FuturePtr value_;
};

// One fork of an RRef held by a worker other than its owner. The owner keeps
// the value while it knows of a fork; destroying the last handle to a
// UserRRef tells the owner that this fork is gone.
//
// Threading: safe from any thread. The destructor does not wait: the notice
// to the owner goes at once from a user thread whose connection to the owner
// is open and free, else it is handed to the agent's pool.
class UserRRef {
 public:
  // created: completes when the owner has the value (for a reference made
  // by remote()), with the creation's error if it failed; already completed
  // for a fork received from another worker.
  UserRRef(std::weak_ptr<Agent> agent, int owner, int64_t rref_id, int64_t fork_id,
           FuturePtr created);
  ~UserRRef();
  UserRRef(const UserRRef&) = delete;
  UserRRef& operator=(const UserRRef&) = delete;

  // The agent of the job this fork belongs to (expired once it shut down).
  const std::weak_ptr<Agent>& agent() const { return agent_; }
  int owner() const { return owner_; }
  int64_t rrefId() const { return rref_id_; }
  int64_t forkId() const { return fork_id_; }
  const FuturePtr& created() const { return created_; }

  // Whether the owner is known to hold this fork.
  bool confirmed() const { return confirmed_; }
  void markConfirmed() { confirmed_ = true; }

  // Tells the owner now (at shutdown, or when the fork never reached it);
  // the destructor then sends nothing. Returns whether a notice was due.
  bool release(bool notify_owner);

  static int64_t numLive();

 private:
  const std::weak_ptr<Agent> agent_;
  const int owner_;
  const int64_t rref_id_;
  const int64_t fork_id_;
  const FuturePtr created_;
  std::atomic<bool> confirmed_{false};
  std::atomic<bool> released_{false};
};

// A remote reference as Python and TorchScript hold it
// (torch.classes.dist_rpc.RRef): either the owner's own reference to its
// value, or a user's fork.
class RRef : public torch::CustomClassHolder {
 public:
  RRef(std::shared_ptr<OwnerRRef> owner, int owner_rank);
  RRef(std::shared_ptr<UserRRef> user, int owner_rank);

  bool isOwner() const { return owner_ != nullptr; }
  int ownerRank() const { return owner_rank_; }
  int64_t id() const;
  const std::shared_ptr<OwnerRRef>& owner() const { return owner_; }
  const std::shared_ptr<UserRRef>& user() const { return user_; }

  // For the owner: always. For a user: once the owner confirmed its fork.
  bool confirmedByOwner() const;

  // The owner's value; waits until it is created. Throws the creation's
  // error, or c10::ValueError naming the owner on another worker.
  c10::IValue localValue(const std::string& owner_name) const;

 private:
  const std::shared_ptr<OwnerRRef> owner_;
  const std::shared_ptr<UserRRef> user_;
  const int owner_rank_;
};

using RRefPtr = c10::intrusive_ptr<RRef>;

}  // namespace distgrad::rpc
