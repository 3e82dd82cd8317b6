#pragma once

#include "rpc/out_variant.h"
#include "rpc/request.h"

#include <ATen/core/ivalue.h>

#include <string>
#include <vector>

namespace distgrad::rpc {

// Runs the builtin operator named target through the dispatcher and returns
// its result (its single output, or a tuple of its outputs). target is
// "ns::name.overload" or "ns::name"; without an overload the first overload
// whose schema accepts args and kwargs is used (and remembered for the same
// argument types). Throws c10::ValueError for an unknown operator and
// c10::TypeError when no overload accepts the arguments. With results, the
// operator's tensor results are allocated by it where runIntoAllocated can.
c10::IValue runBuiltinOperator(const std::string& target, std::vector<c10::IValue> args,
                               const Kwargs& kwargs, const ResultAllocator& results = nullptr);

}  // namespace distgrad::rpc
