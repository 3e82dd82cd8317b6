#include "rpc/rref.h"

#include "rpc/agent.h"

#include <c10/util/Exception.h>

namespace distgrad::rpc {

namespace {

std::atomic<int64_t> g_live_owners{0};
std::atomic<int64_t> g_live_users{0};

}  // namespace

OwnerRRef::OwnerRRef(int64_t id)
    : id_(id), value_(c10::make_intrusive<c10::ivalue::Future>(c10::AnyType::get())) {
  ++g_live_owners;
}

OwnerRRef::~OwnerRRef() {
  --g_live_owners;
}

int64_t OwnerRRef::numLive() {
  return g_live_owners;
}

UserRRef::UserRRef(std::weak_ptr<Agent> agent, int owner, int64_t rref_id, int64_t fork_id,
                   FuturePtr created)
    : agent_(std::move(agent)),
      owner_(owner),
      rref_id_(rref_id),
      fork_id_(fork_id),
      created_(std::move(created)) {
  ++g_live_users;
}

UserRRef::~UserRRef() {
  --g_live_users;
  release(true);
}

bool UserRRef::release(bool notify_owner) {
  if (released_.exchange(true)) {
    return false;
  }
  if (auto agent = agent_.lock()) {
    agent->rrefs().forgetUser(*this, notify_owner);
  }
  return true;
}

int64_t UserRRef::numLive() {
  return g_live_users;
}

RRef::RRef(std::shared_ptr<OwnerRRef> owner, int owner_rank)
    : owner_(std::move(owner)), owner_rank_(owner_rank) {}

RRef::RRef(std::shared_ptr<UserRRef> user, int owner_rank)
    : user_(std::move(user)), owner_rank_(owner_rank) {}

int64_t RRef::id() const {
  return owner_ ? owner_->id() : user_->rrefId();
}

bool RRef::confirmedByOwner() const {
  return owner_ || user_->confirmed();
}

c10::IValue RRef::localValue(const std::string& owner_name) const {
  TORCH_CHECK_VALUE(owner_ != nullptr, "RRef ", id(), " is owned by worker '", owner_name,
                    "', not by this worker: local_value() works only on the owner (use "
                    "to_here() for a copy)");
  owner_->value()->waitAndThrow();
  return owner_->value()->value();
}

}  // namespace distgrad::rpc
