#include "rpc/agent.h"

#include <torch/library.h>

namespace {

using distgrad::rpc::Agent;
using distgrad::rpc::FuturePtr;
using distgrad::rpc::Request;

// Pops (to, func, args, timeout) and sends the call. args is a tuple of
// arguments; any other value is the single argument.
FuturePtr callFromStack(torch::jit::Stack* stack) {
  double timeout = torch::jit::pop(*stack).toDouble();
  c10::IValue args = torch::jit::pop(*stack);
  std::string func = torch::jit::pop(*stack).toStringRef();
  std::string to = torch::jit::pop(*stack).toStringRef();
  std::vector<c10::IValue> values;
  if (args.isTuple()) {
    const auto& elements = args.toTupleRef().elements();
    values.assign(elements.begin(), elements.end());
  } else {
    values.push_back(std::move(args));
  }
  auto agent = Agent::current();
  return agent->call(agent->worker(to).rank, Request::byName(func, std::move(values)), timeout);
}

void rpcAsync(const c10::OperatorHandle& /*op*/, torch::jit::Stack* stack) {
  torch::jit::push(*stack, callFromStack(stack));
}

void rpcSync(const c10::OperatorHandle& /*op*/, torch::jit::Stack* stack) {
  FuturePtr result = callFromStack(stack);
  result->waitAndThrow();
  torch::jit::push(*stack, result->value());
}

}  // namespace

// Boxed kernels: schema inference cannot express Future(Any). CONSERVATIVE
// because an RPC is a side effect TorchScript must keep.
TORCH_LIBRARY(dist_rpc, m) {
  m.def(torch::schema("rpc_async(str to, str func, Any args, float timeout=-1.) -> Future(Any)",
                      c10::AliasAnalysisKind::CONSERVATIVE),
        torch::CppFunction::makeFromBoxedFunction<&rpcAsync>());
  m.def(torch::schema("rpc_sync(str to, str func, Any args, float timeout=-1.) -> Any",
                      c10::AliasAnalysisKind::CONSERVATIVE),
        torch::CppFunction::makeFromBoxedFunction<&rpcSync>());
}
