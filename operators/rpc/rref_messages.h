#pragma once

#include <ATen/core/ivalue.h>

#include <vector>

namespace distgrad::rpc {

// The RRef protocol's pieces on the wire, encoded and decoded side by side.
// Every decode throws std::runtime_error on malformed input.

// How an RRef travels in a message's RRef table.
struct ForkState {
  int owner = 0;
  int64_t rref_id = 0;
  int64_t fork_id = 0;  // RRefContext::kNoFork when it travels to its owner

  c10::IValue toIValue() const;
  static ForkState fromIValue(const c10::IValue& value);
};

// A user tells the owner of a new fork it sent to holder (a call: the user
// keeps its own fork until the owner answers).
struct AddFork {
  static constexpr const char* kHandler = "rref.add_fork";

  int64_t rref_id = 0;
  int64_t fork_id = 0;
  int64_t holder = 0;

  std::vector<c10::IValue> toArgs() const;
  static AddFork fromArgs(const std::vector<c10::IValue>& args);
};

// A holder tells the owner that its fork is gone (a notice).
struct ReleaseFork {
  static constexpr const char* kHandler = "rref.release_fork";

  int64_t rref_id = 0;
  int64_t fork_id = 0;

  std::vector<c10::IValue> toArgs() const;
  static ReleaseFork fromArgs(const std::vector<c10::IValue>& args);
};

// The owner tells a holder that it knows of its fork (a notice).
struct ConfirmFork {
  static constexpr const char* kHandler = "rref.confirm_fork";

  int64_t fork_id = 0;

  std::vector<c10::IValue> toArgs() const;
  static ConfirmFork fromArgs(const std::vector<c10::IValue>& args);
};

// What a to_here() gets back: the value itself, or a Python object as the
// PythonValueCodec serialized it.
struct FetchedValue {
  bool python = false;
  c10::IValue value;

  c10::IValue toIValue() const;
  static FetchedValue fromIValue(const c10::IValue& value);
};

}  // namespace distgrad::rpc
