#include "python/call_invoke.h"

#include "python/call_completion.h"

#include "python/gil.h"
#include "python/interrupt.h"
#include "python/python_values.h"
#include "rpc/agent.h"

#include <torch/csrc/jit/python/pybind_utils.h>

namespace distgrad::python {

namespace py = pybind11;
using rpc::Agent;
using rpc::FuturePtr;
using rpc::Request;

py::object invoke(int dst, Request request, double timeout, const py::object& py_future,
                  const py::object& decode) {
  auto agent = Agent::current();
  FuturePtr result;
  {
    py::gil_scoped_release no_gil;
    result = agent->call(dst, std::move(request), timeout);
    if (py_future.is_none()) {
      agent->pollForReply(result);
      waitInterruptibly(result, PullWaker::kYes);
    }
  }
  if (py_future.is_none()) {
    if (result->hasError()) {
      std::rethrow_exception(result->exception_ptr());
    }
    return torch::jit::toPyObject(result->value());
  }
  FuturePtr target = futureOf(py_future);
  std::shared_ptr<py::object> decoder;
  if (!decode.is_none()) {
    decoder = std::shared_ptr<py::object>(new py::object(decode), [](py::object* o) {
      RuntimeGil gil;
      delete o;
    });
  }
  // User callbacks run in the completion: not on the runtime's pool (nor on
  // a reader: see CallCompletion).
  auto completion = std::make_shared<CallCompletion>(
      agent, result, [target, decoder](const FuturePtr& source) {
        if (source->hasError()) {
          target->setErrorIfNeeded(source->exception_ptr());
          return;
        }
        if (!decoder) {
          target->markCompleted(source->value());
          return;
        }
        c10::IValue value;
        try {
          RuntimeGil gil;
          py::object decoded = (*decoder)(torch::jit::toPyObject(source->value()));
          value = torch::jit::toIValue(decoded, c10::PyObjectType::get());
        } catch (py::error_already_set& e) {
          std::string message;
          {
            RuntimeGil gil;
            message = e.what();
            e.restore();
            PyErr_Clear();
          }
          target->setErrorIfNeeded(std::make_exception_ptr(std::runtime_error(message)));
          return;
        }
        target->markCompleted(std::move(value));
      });
  CallCompletion::attach(py_future, completion);
  result->addCallback([agent, completion](c10::ivalue::Future& done) {
    completion->onReply(*agent, FuturePtr::reclaim_copy(&done));
  });
  return py_future;
}

}  // namespace distgrad::python
