#include "rpc/rref_context.h"

#include "common/errors.h"
#include "common/thread_role.h"
#include "common/torch_private.h"
#include "rpc/agent.h"
#include "rpc/rref_messages.h"

#include <c10/core/CPUAllocator.h>
#include <c10/util/Exception.h>

#include <algorithm>

namespace distgrad::rpc {

namespace {

FuturePtr completedFuture() {
  auto future = c10::make_intrusive<c10::ivalue::Future>(c10::NoneType::get());
  future->markCompleted(c10::IValue());
  return future;
}

Request internalRequest(const char* handler, std::vector<c10::IValue> args) {
  Request request;
  request.kind = CallKind::kInternal;
  request.target = handler;
  request.args = std::move(args);
  return request;
}

// Whether destroying v only frees memory: tensors in memory of the CPU
// allocator with no autograd graph and no Python object, numbers, strings,
// and containers of them. Anything else (a Python object, an RRef, a graph
// whose nodes may be Python functions, memory lent by Python) may run code.
bool isPlainData(const c10::IValue& v) {
  if (v.isTensor()) {
    const at::Tensor& t = v.toTensor();
    return !t.requires_grad() && !torch_private::hasPythonObject(t) &&
           (!t.has_storage() ||
            t.storage().data_ptr().get_deleter() == c10::GetCPUAllocator()->raw_deleter());
  }
  if (v.isNone() || v.isInt() || v.isDouble() || v.isBool() || v.isString() || v.isComplexDouble()) {
    return true;
  }
  auto all_plain = [](const auto& elements) {
    return std::all_of(elements.begin(), elements.end(),
                       [](const c10::IValue& e) { return isPlainData(e); });
  };
  if (v.isTuple()) {
    return all_plain(v.toTupleRef().elements());
  }
  if (v.isList()) {
    return all_plain(v.toListRef());
  }
  return false;
}

// Ids carry their creator's rank in the top bits.
int creatorOf(int64_t id) {
  return static_cast<int>(id >> 48);
}

}  // namespace

RRefContext::RRefContext(Agent& agent) : agent_(agent) {}

void RRefContext::install() {
  agent_.registerInternalHandler(
      AddFork::kHandler,
      [this](int /*src*/, std::vector<c10::IValue> args) {
        auto message = AddFork::fromArgs(args);
        addFork(message.rref_id, message.fork_id, static_cast<int>(message.holder));
        if (message.holder != agent_.rank()) {
          agent_.notify(static_cast<int>(message.holder),
                        internalRequest(ConfirmFork::kHandler, ConfirmFork{message.fork_id}.toArgs()));
        }
        return completedFuture();
      },
      Agent::HandlerThread::kReader);
  agent_.registerInternalHandler(
      ReleaseFork::kHandler,
      [this](int /*src*/, std::vector<c10::IValue> args) {
        auto message = ReleaseFork::fromArgs(args);
        removeFork(message.rref_id, message.fork_id);
        return completedFuture();
      },
      Agent::HandlerThread::kReader);
  agent_.registerInternalHandler(
      ConfirmFork::kHandler,
      [this](int /*src*/, std::vector<c10::IValue> args) {
        auto message = ConfirmFork::fromArgs(args);
        std::shared_ptr<UserRRef> user;
        {
          std::lock_guard<std::mutex> lock(mu_);
          auto it = users_.find(message.fork_id);
          if (it != users_.end()) {
            user = it->second.lock();
          } else {
            // The message carrying the fork has not arrived yet.
            confirmed_early_.insert(message.fork_id);
          }
        }
        if (user) {
          user->markConfirmed();
        }
        return completedFuture();
      },
      Agent::HandlerThread::kReader);
}

int64_t RRefContext::newId() {
  std::lock_guard<std::mutex> lock(mu_);
  return (static_cast<int64_t>(agent_.rank()) << 48) + ++counter_;
}

RRefPtr RRefContext::createOwned(c10::IValue value) {
  auto owner = std::make_shared<OwnerRRef>(newId());
  owner->value()->markCompleted(std::move(value));
  return c10::make_intrusive<RRef>(std::move(owner), agent_.rank());
}

RRefPtr RRefContext::makeUser(int owner, int64_t rref_id, int64_t fork_id, FuturePtr created) {
  auto user = std::make_shared<UserRRef>(agent_.weak_from_this(), owner, rref_id, fork_id,
                                         std::move(created));
  {
    std::lock_guard<std::mutex> lock(mu_);
    users_[fork_id] = user;
    if (confirmed_early_.erase(fork_id) > 0) {
      user->markConfirmed();
    }
  }
  return c10::make_intrusive<RRef>(std::move(user), owner);
}

std::pair<RRefPtr, RemoteTarget> RRefContext::prepareRemote(int dst) {
  int64_t rref_id = newId();
  if (dst == agent_.rank()) {
    auto owner = std::make_shared<OwnerRRef>(rref_id);
    {
      std::lock_guard<std::mutex> lock(mu_);
      OwnerEntry& entry = owners_[rref_id];
      entry.rref = owner;
      entry.creation_pending = true;
    }
    return {c10::make_intrusive<RRef>(std::move(owner), dst), RemoteTarget{rref_id, kNoFork}};
  }
  int64_t fork_id = newId();
  auto created = c10::make_intrusive<c10::ivalue::Future>(c10::NoneType::get());
  return {makeUser(dst, rref_id, fork_id, std::move(created)), RemoteTarget{rref_id, fork_id}};
}

void RRefContext::finishRemote(const RRefPtr& rref, const FuturePtr& call) {
  if (rref->isOwner()) {
    if (!call) {
      // The request never left: nothing will set the value.
      std::shared_ptr<OwnerRRef> erased;
      {
        std::unique_lock<std::mutex> lock(mu_);
        auto it = owners_.find(rref->id());
        if (it != owners_.end()) {
          it->second.creation_pending = false;
          erased = maybeEraseLocked(lock, rref->id());
        }
      }
      drop(std::move(erased));
    }
    return;  // the callee (this worker) sets the value itself
  }
  const auto& user = rref->user();
  if (!call) {
    user->release(/*notify_owner=*/false);  // the owner never heard of it
    return;
  }
  std::weak_ptr<UserRRef> weak_user = user;
  FuturePtr created = user->created();
  call->addCallback([weak_user, created](c10::ivalue::Future& done) {
    if (done.hasError()) {
      created->setErrorIfNeeded(done.exception_ptr());
      return;
    }
    if (auto user = weak_user.lock()) {
      user->markConfirmed();
    }
    created->markCompleted(c10::IValue());
  });
}

RRefContext::OwnerEntry& RRefContext::entryLocked(const std::unique_lock<std::mutex>& held,
                                                 int64_t rref_id) {
  TORCH_INTERNAL_ASSERT(held.owns_lock() && held.mutex() == &mu_);
  OwnerEntry& entry = owners_[rref_id];
  if (!entry.rref) {
    entry.rref = std::make_shared<OwnerRRef>(rref_id);
  }
  return entry;
}

std::shared_ptr<OwnerRRef> RRefContext::maybeEraseLocked(const std::unique_lock<std::mutex>& held,
                                                         int64_t rref_id) {
  TORCH_INTERNAL_ASSERT(held.owns_lock() && held.mutex() == &mu_);
  auto it = owners_.find(rref_id);
  if (it == owners_.end() || !it->second.forks.empty() || it->second.creation_pending) {
    return nullptr;
  }
  std::shared_ptr<OwnerRRef> erased = std::move(it->second.rref);
  owners_.erase(it);
  return erased;
}

void RRefContext::drop(std::shared_ptr<OwnerRRef> owner) {
  if (!owner) {
    return;
  }
  const FuturePtr& value = owner->value();
  if (value->completed() && (value->hasError() || isPlainData(value->constValue()))) {
    owner.reset();  // frees memory, nothing more: here, on any thread
    return;
  }
  // The value may be the last reference to Python objects, RRefs or an
  // autograd graph: it is destroyed on the pool, with nothing held (its
  // destructor may take the GIL and come back here).
  agent_.pool().run([owner = std::move(owner)]() mutable { owner.reset(); });
}

void RRefContext::expectValue(const RemoteTarget& target, int src) {
  std::unique_lock<std::mutex> lock(mu_);
  OwnerEntry& entry = entryLocked(lock, target.rref_id);
  entry.awaiting_request = false;
  if (!entry.rref->value()->completed()) {
    entry.creation_pending = true;
  }
  if (target.fork_id != kNoFork && released_early_.erase(target.fork_id) == 0) {
    entry.forks.emplace(target.fork_id, src);
  }
}

void RRefContext::setValue(int64_t rref_id, const FuturePtr& result) {
  std::shared_ptr<OwnerRRef> owner;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = owners_.find(rref_id);
    if (it == owners_.end()) {
      return;  // dropped by clear() at shutdown
    }
    owner = it->second.rref;
  }
  if (result->hasError()) {
    owner->value()->setErrorIfNeeded(result->exception_ptr());
  } else if (!owner->value()->completed()) {
    owner->value()->markCompleted(result->value());
  }
  owner.reset();
  std::shared_ptr<OwnerRRef> erased;
  {
    std::unique_lock<std::mutex> lock(mu_);
    auto it = owners_.find(rref_id);
    if (it != owners_.end()) {
      it->second.creation_pending = false;
      erased = maybeEraseLocked(lock, rref_id);
    }
  }
  drop(std::move(erased));
}

FuturePtr RRefContext::ownerValue(int64_t rref_id) {
  std::unique_lock<std::mutex> lock(mu_);
  OwnerEntry& entry = entryLocked(lock, rref_id);
  // A to_here() can overtake the remote() request that creates the value
  // (they come from different workers): the entry then waits for it.
  if (!entry.rref->value()->completed() && !entry.creation_pending) {
    entry.creation_pending = true;
    entry.awaiting_request = true;
  }
  return entry.rref->value();
}

void RRefContext::addFork(int64_t rref_id, int64_t fork_id, int holder) {
  std::lock_guard<std::mutex> lock(mu_);
  if (released_early_.erase(fork_id) > 0) {
    return;  // the holder has already released it
  }
  auto it = owners_.find(rref_id);
  TORCH_CHECK_VALUE(it != owners_.end(), "RRef ", rref_id, " is no longer held by its owner");
  it->second.forks.emplace(fork_id, holder);
}

void RRefContext::removeFork(int64_t rref_id, int64_t fork_id) {
  std::shared_ptr<OwnerRRef> erased;
  {
    std::unique_lock<std::mutex> lock(mu_);
    auto it = owners_.find(rref_id);
    if (it == owners_.end() || it->second.forks.erase(fork_id) == 0) {
      released_early_.insert(fork_id);
      return;
    }
    erased = maybeEraseLocked(lock, rref_id);
  }
  drop(std::move(erased));
}

std::vector<c10::IValue> RRefContext::fork(const std::vector<RRefPtr>& rrefs, int dst) {
  std::vector<c10::IValue> states;
  states.reserve(rrefs.size());
  for (const auto& rref : rrefs) {
    ForkState state{rref->ownerRank(), rref->id(), kNoFork};
    if (rref->isOwner()) {
      // A fork even to itself (a self-RPC): the value must stay listed until
      // the message is decoded.
      state.fork_id = newId();
      std::lock_guard<std::mutex> lock(mu_);
      OwnerEntry& entry = owners_[rref->id()];
      if (!entry.rref) {
        entry.rref = rref->owner();
      }
      entry.forks.emplace(state.fork_id, dst);
    } else if (rref->ownerRank() != dst) {
      state.fork_id = newId();
      FuturePtr added = agent_.call(
          rref->ownerRank(),
          internalRequest(AddFork::kHandler,
                          AddFork{rref->id(), state.fork_id, static_cast<int64_t>(dst)}.toArgs()),
          /*timeout_seconds=*/0);
      {
        std::lock_guard<std::mutex> lock(mu_);
        ++pending_forks_;
      }
      // The callback holds this worker's own fork until the owner knows of
      // the new one.
      added->addCallback([this, keep = rref->user()](c10::ivalue::Future&) {
        std::lock_guard<std::mutex> lock(mu_);
        --pending_forks_;
      });
    }
    states.push_back(state.toIValue());
  }
  return states;
}

void RRefContext::abortForks(const std::vector<c10::IValue>& states) {
  for (const auto& value : states) {
    ForkState state = ForkState::fromIValue(value);
    if (state.fork_id == kNoFork) {
      continue;
    }
    if (state.owner == agent_.rank()) {
      removeFork(state.rref_id, state.fork_id);
    } else {
      agent_.notify(state.owner, internalRequest(ReleaseFork::kHandler,
                                                 ReleaseFork{state.rref_id, state.fork_id}.toArgs()));
    }
  }
}

std::vector<RRefPtr> RRefContext::adopt(const std::vector<c10::IValue>& states, int src) {
  std::vector<RRefPtr> rrefs;
  rrefs.reserve(states.size());
  std::string missing;
  const int self = agent_.rank();
  for (const auto& value : states) {
    ForkState state = ForkState::fromIValue(value);
    if (state.owner != self) {
      auto created = completedFuture();
      RRefPtr user = makeUser(state.owner, state.rref_id, state.fork_id, std::move(created));
      if (src == state.owner) {
        user->user()->markConfirmed();  // the owner registered it before sending
      }
      rrefs.push_back(std::move(user));
      continue;
    }
    std::shared_ptr<OwnerRRef> owner;
    {
      std::unique_lock<std::mutex> lock(mu_);
      auto it = owners_.find(state.rref_id);
      if (it != owners_.end()) {
        owner = it->second.rref;
      } else if (creatorOf(state.rref_id) != self && creatorOf(state.rref_id) != src) {
        // Created by a remote() from a third worker, whose request has not
        // arrived yet (a reference it passed on can overtake it, as in
        // ownerValue): the entry waits for the value.
        OwnerEntry& entry = entryLocked(lock, state.rref_id);
        entry.creation_pending = true;
        entry.awaiting_request = true;
        owner = entry.rref;
      }
    }
    if (state.fork_id != kNoFork) {
      removeFork(state.rref_id, state.fork_id);  // this worker holds it now
    }
    if (!owner) {
      missing += (missing.empty() ? "" : ", ") + std::to_string(state.rref_id);
      rrefs.push_back(RRefPtr());
      continue;
    }
    rrefs.push_back(c10::make_intrusive<RRef>(std::move(owner), self));
  }
  if (!missing.empty()) {
    throw DistError("a message from worker rank " + std::to_string(src) +
                    " refers to RRefs this worker no longer owns: " + missing);
  }
  return rrefs;
}

void RRefContext::forgetUser(const UserRRef& user, bool notify_owner) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    users_.erase(user.forkId());
  }
  if (!notify_owner) {
    return;
  }
  // Destructors run anywhere, holding the GIL or a runtime thread: the
  // notice goes from here only if that needs no wait (a user thread, an open
  // connection free now), else from the pool.
  int owner = user.owner();
  Request request = internalRequest(ReleaseFork::kHandler,
                                    ReleaseFork{user.rrefId(), user.forkId()}.toArgs());
  if (currentThreadRole() == ThreadRole::kUser && agent_.tryNotify(owner, request)) {
    return;
  }
  agent_.pool().run([weak = agent_.weak_from_this(), owner, request = std::move(request)]() mutable {
    if (auto agent = weak.lock()) {
      agent->notify(owner, std::move(request));
    }
  });
}

void RRefContext::onPeerLost(int rank) {
  std::vector<std::shared_ptr<OwnerRRef>> erased;
  std::vector<std::shared_ptr<OwnerRRef>> never_created;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = owners_.begin(); it != owners_.end();) {
      if (it->second.awaiting_request && creatorOf(it->first) == rank) {
        // Its remote() will not come: those waiting for the value fail.
        it->second.awaiting_request = false;
        it->second.creation_pending = false;
        never_created.push_back(it->second.rref);
      }
      auto& forks = it->second.forks;
      for (auto f = forks.begin(); f != forks.end();) {
        f = f->second == rank ? forks.erase(f) : std::next(f);
      }
      if (forks.empty() && !it->second.creation_pending) {
        erased.push_back(std::move(it->second.rref));
        it = owners_.erase(it);
      } else {
        ++it;
      }
    }
    for (auto* early : {&released_early_, &confirmed_early_}) {
      for (auto it = early->begin(); it != early->end();) {
        it = creatorOf(*it) == rank ? early->erase(it) : std::next(it);
      }
    }
  }
  for (const auto& owner : never_created) {
    owner->value()->setErrorIfNeeded(std::make_exception_ptr(DistNetworkError(
        "RRef " + std::to_string(owner->id()) + " will never have a value: the worker that created it "
        "(rank " + std::to_string(rank) + ") was lost before its remote() call arrived")));
  }
  for (auto& owner : erased) {
    drop(std::move(owner));
  }
}

void RRefContext::releaseUsers() {
  std::vector<std::shared_ptr<UserRRef>> users;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [fork_id, weak] : users_) {
      if (auto user = weak.lock()) {
        users.push_back(std::move(user));
      }
    }
  }
  for (const auto& user : users) {
    user->release(/*notify_owner=*/true);
  }
}

void RRefContext::clear() {
  std::unordered_map<int64_t, OwnerEntry> owners;
  {
    std::lock_guard<std::mutex> lock(mu_);
    owners.swap(owners_);
    released_early_.clear();
    confirmed_early_.clear();
    users_.clear();
  }
}

std::vector<std::pair<std::string, int64_t>> RRefContext::debugInfo() const {
  std::lock_guard<std::mutex> lock(mu_);
  int64_t forks = 0;
  for (const auto& [id, entry] : owners_) {
    forks += static_cast<int64_t>(entry.forks.size());
  }
  return {
      {"num_owner_rrefs", OwnerRRef::numLive()},
      {"num_user_rrefs", UserRRef::numLive()},
      {"num_forks", forks},
      {"num_pending_forks", pending_forks_},
  };
}

}  // namespace distgrad::rpc
