#include "rpc/rref_messages.h"

#include <stdexcept>

namespace distgrad::rpc {

namespace {

// The int fields of a tuple of exactly n ints.
std::vector<int64_t> ints(const c10::IValue& value, size_t n, const char* what) {
  if (!value.isTuple() || value.toTupleRef().size() != n) {
    throw std::runtime_error(std::string("malformed ") + what);
  }
  std::vector<int64_t> out;
  for (const auto& e : value.toTupleRef().elements()) {
    if (!e.isInt()) {
      throw std::runtime_error(std::string("malformed ") + what);
    }
    out.push_back(e.toInt());
  }
  return out;
}

std::vector<int64_t> intArgs(const std::vector<c10::IValue>& args, size_t n, const char* what) {
  return ints(c10::ivalue::Tuple::create(args), n, what);
}

}  // namespace

c10::IValue ForkState::toIValue() const {
  return c10::ivalue::Tuple::create({static_cast<int64_t>(owner), rref_id, fork_id});
}

ForkState ForkState::fromIValue(const c10::IValue& value) {
  auto f = ints(value, 3, "RRef fork state");
  return {static_cast<int>(f[0]), f[1], f[2]};
}

std::vector<c10::IValue> AddFork::toArgs() const {
  return {rref_id, fork_id, holder};
}

AddFork AddFork::fromArgs(const std::vector<c10::IValue>& args) {
  auto f = intArgs(args, 3, "add-fork request");
  return {f[0], f[1], f[2]};
}

std::vector<c10::IValue> ReleaseFork::toArgs() const {
  return {rref_id, fork_id};
}

ReleaseFork ReleaseFork::fromArgs(const std::vector<c10::IValue>& args) {
  auto f = intArgs(args, 2, "RRef release notice");
  return {f[0], f[1]};
}

std::vector<c10::IValue> ConfirmFork::toArgs() const {
  return {fork_id};
}

ConfirmFork ConfirmFork::fromArgs(const std::vector<c10::IValue>& args) {
  return {intArgs(args, 1, "RRef confirmation")[0]};
}

c10::IValue FetchedValue::toIValue() const {
  return c10::ivalue::Tuple::create({python, value});
}

FetchedValue FetchedValue::fromIValue(const c10::IValue& value) {
  if (!value.isTuple() || value.toTupleRef().size() != 2 ||
      !value.toTupleRef().elements()[0].isBool()) {
    throw std::runtime_error("malformed RRef value");
  }
  const auto& fields = value.toTupleRef().elements();
  return {fields[0].toBool(), fields[1]};
}

}  // namespace distgrad::rpc
