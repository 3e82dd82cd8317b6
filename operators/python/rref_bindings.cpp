#include "python/bindings.h"
#include "python/interrupt.h"
#include "python/python_values.h"
#include "rpc/agent.h"

#include <torch/csrc/jit/python/pybind_utils.h>

namespace distgrad::python {

namespace py = pybind11;
using rpc::Agent;

// The RRef handle (torch.classes.dist_rpc.RRef) functions distgrad.rpc.RRef
// wraps.
void initRRefBindings(py::module& m) {
  m.def("_rref_create", [](const py::handle& value) {
    return torch::jit::toPyObject(c10::IValue(Agent::current()->rrefs().createOwned(pythonValue(value))));
  });
  m.def("_rref_to_here", [](const py::handle& handle, double timeout) {
    auto rref = rrefHandle(handle);
    auto agent = Agent::current();
    c10::IValue value;
    {
      py::gil_scoped_release no_gil;
      rpc::FuturePtr fetched = agent->fetch(rref, timeout);
      if (!rref->isOwner()) {
        agent->pollForReply(fetched);
      }
      waitInterruptibly(fetched, PullWaker::kYes);  // Ctrl-C ends the wait
      if (fetched->hasError()) {
        std::rethrow_exception(fetched->exception_ptr());
      }
      value = rref->isOwner() ? fetched->value() : agent->decodeFetched(fetched->value());
    }
    return torch::jit::toPyObject(std::move(value));
  });
  m.def("_rref_local_value", [](const py::handle& handle) {
    auto rref = rrefHandle(handle);
    // The owner's value stays usable after the job has shut down.
    std::string owner = rref->isOwner() ? "" : Agent::current()->worker(rref->ownerRank()).name;
    c10::IValue value;
    {
      py::gil_scoped_release no_gil;
      value = rref->localValue(owner);
    }
    return torch::jit::toPyObject(std::move(value));
  });
  m.def("_rref_is_owner", [](const py::handle& handle) { return rrefHandle(handle)->isOwner(); });
  m.def("_rref_owner_rank", [](const py::handle& handle) { return rrefHandle(handle)->ownerRank(); });
  m.def("_rref_id", [](const py::handle& handle) { return rrefHandle(handle)->id(); });
  m.def("_rref_confirmed", [](const py::handle& handle) {
    return rrefHandle(handle)->confirmedByOwner();
  });
  m.def(
      "_rref_release_users", [] { Agent::current()->rrefs().releaseUsers(); },
      py::call_guard<py::gil_scoped_release>());
}

}  // namespace distgrad::python
