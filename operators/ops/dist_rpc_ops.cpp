#include "rpc/agent.h"
#include "rpc/rref_pickling.h"
#include "rpc/thread_pool.h"

#include <torch/custom_class.h>
#include <torch/library.h>

namespace {

using distgrad::rpc::Agent;
using distgrad::rpc::FuturePtr;
using distgrad::rpc::Request;
using distgrad::rpc::RRef;
using distgrad::rpc::RRefPtr;

struct Call {
  int dst;
  Request request;
  double timeout;
};

// Pops (to, func, args, timeout). args is a tuple of arguments; any other
// value is the single argument.
Call callFromStack(const Agent& agent, torch::jit::Stack* stack) {
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
  return {agent.worker(to).rank, Request::byName(func, std::move(values)), timeout};
}

void rpcAsync(const c10::OperatorHandle& /*op*/, torch::jit::Stack* stack) {
  auto agent = Agent::current();
  Call call = callFromStack(*agent, stack);
  torch::jit::push(*stack, agent->call(call.dst, std::move(call.request), call.timeout));
}

void rpcSync(const c10::OperatorHandle& /*op*/, torch::jit::Stack* stack) {
  auto agent = Agent::current();
  Call call = callFromStack(*agent, stack);
  FuturePtr result = agent->call(call.dst, std::move(call.request), call.timeout);
  {
    distgrad::rpc::ThreadPool::WaitScope waiting;
    result->waitAndThrow();
  }
  torch::jit::push(*stack, result->value());
}

void remote(const c10::OperatorHandle& /*op*/, torch::jit::Stack* stack) {
  auto agent = Agent::current();
  Call call = callFromStack(*agent, stack);
  torch::jit::push(*stack, c10::IValue(agent->remote(call.dst, std::move(call.request), call.timeout)));
}

}  // namespace

// Boxed kernels: schema inference cannot express Future(Any). CONSERVATIVE
// because an RPC is a side effect TorchScript must keep.
//
// torch.classes.dist_rpc.RRef is what an RRef is in TorchScript (wrapped in
// Python by distgrad.rpc.RRef). It pickles only inside an RPC message, as its
// index in the message's RRef table.
TORCH_LIBRARY(dist_rpc, m) {
  m.class_<RRef>("RRef")
      .def("to_here",
           [](const RRefPtr& self, double timeout) {
             return Agent::current()->toHere(self, timeout);
           },
           "", {torch::arg("timeout") = -1.0})
      .def("local_value",
           [](const RRefPtr& self) {
             return self->localValue(Agent::current()->worker(self->ownerRank()).name);
           })
      .def("is_owner", [](const RRefPtr& self) { return self->isOwner(); })
      .def("owner_rank", [](const RRefPtr& self) { return static_cast<int64_t>(self->ownerRank()); })
      .def("owner_name",
           [](const RRefPtr& self) { return Agent::current()->worker(self->ownerRank()).name; })
      .def("confirmed_by_owner", [](const RRefPtr& self) { return self->confirmedByOwner(); })
      .def("rref_id", [](const RRefPtr& self) { return self->id(); })
      .def_pickle(
          [](const RRefPtr& self) -> int64_t {
            return distgrad::rpc::RRefPickleScope::add(self);
          },
          [](int64_t index) -> RRefPtr { return distgrad::rpc::RRefUnpickleScope::at(index); });
  m.def(torch::schema("rpc_async(str to, str func, Any args, float timeout=-1.) -> Future(Any)",
                      c10::AliasAnalysisKind::CONSERVATIVE),
        torch::CppFunction::makeFromBoxedFunction<&rpcAsync>());
  m.def(torch::schema("rpc_sync(str to, str func, Any args, float timeout=-1.) -> Any",
                      c10::AliasAnalysisKind::CONSERVATIVE),
        torch::CppFunction::makeFromBoxedFunction<&rpcSync>());
  m.def(torch::schema("remote(str to, str func, Any args, float timeout=-1.) -> "
                      "__torch__.torch.classes.dist_rpc.RRef",
                      c10::AliasAnalysisKind::CONSERVATIVE),
        torch::CppFunction::makeFromBoxedFunction<&remote>());
}
