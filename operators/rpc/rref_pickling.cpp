#include "rpc/rref_pickling.h"

#include <c10/util/Exception.h>

namespace distgrad::rpc {

namespace {

thread_local RRefPickleScope* t_pickle_scope = nullptr;
thread_local RRefUnpickleScope* t_unpickle_scope = nullptr;

}  // namespace

RRefPickleScope::RRefPickleScope(std::vector<RRefPtr>* table)
    : table_(table), previous_(t_pickle_scope) {
  t_pickle_scope = this;
}

RRefPickleScope::~RRefPickleScope() {
  t_pickle_scope = previous_;
}

int64_t RRefPickleScope::add(const RRefPtr& rref) {
  RRefPickleScope* scope = t_pickle_scope;
  TORCH_CHECK(scope != nullptr,
              "an RRef can only be pickled as part of a distgrad RPC message (as an argument or "
              "result of rpc_sync, rpc_async or remote)");
  auto [it, added] = scope->indices_.emplace(rref.get(), static_cast<int64_t>(scope->table_->size()));
  if (added) {
    scope->table_->push_back(rref);
  }
  return it->second;
}

RRefUnpickleScope::RRefUnpickleScope(const std::vector<RRefPtr>& table)
    : table_(table), previous_(t_unpickle_scope) {
  t_unpickle_scope = this;
}

RRefUnpickleScope::~RRefUnpickleScope() {
  t_unpickle_scope = previous_;
}

RRefPtr RRefUnpickleScope::at(int64_t index) {
  RRefUnpickleScope* scope = t_unpickle_scope;
  TORCH_CHECK(scope != nullptr, "an RRef can only be unpickled from a distgrad RPC message");
  TORCH_CHECK(index >= 0 && index < static_cast<int64_t>(scope->table_.size()),
              "malformed RPC message: RRef index ", index, " outside its table of ",
              scope->table_.size());
  return scope->table_[index];
}

}  // namespace distgrad::rpc
