#include "python/gil.h"
#include "python/python_values.h"

#include "common/errors.h"

#include <torch/csrc/jit/python/pybind_utils.h>

namespace distgrad::python {

namespace py = pybind11;
using rpc::FuturePtr;

namespace {

// Functions of distgrad._python_call, looked up once and leaked on
// purpose: destroying them at exit would need the GIL.
struct PythonCallModule {
  py::object run;
  py::object finish;
  py::object deserialize;
};

const PythonCallModule& pythonCallModule() {
  static const PythonCallModule* module = [] {
    RuntimeGil gil;
    py::module m = py::module::import("distgrad._python_call");
    return new PythonCallModule{m.attr("run"), m.attr("finish"), m.attr("deserialize")};
  }();
  return *module;
}

// What distgrad._python_call.run and finish return: (kind, ...).
enum Outcome : int { kValue = 0, kSerialized = 1, kFuture = 2, kError = 3 };

// The IValue of an outcome other than kFuture; throws RemoteError for kError.
c10::IValue fromOutcome(const py::tuple& outcome) {
  switch (outcome[0].cast<int>()) {
    case kValue:
      return pythonValue(outcome[1]);
    case kSerialized:
      return serializedValue(outcome[1], outcome[2], outcome[3]);
    case kError:
      throw RemoteError(outcome[1].cast<std::string>(), outcome[2].cast<std::string>(), "");
    default:
      TORCH_CHECK(false, "unexpected outcome of a Python call");
  }
}

c10::IValue tupleOf(const py::handle& sequence, const std::function<c10::IValue(py::handle)>& convert) {
  std::vector<c10::IValue> elements;
  for (const auto& e : sequence) {
    elements.push_back(convert(e));
  }
  return c10::ivalue::Tuple::create(std::move(elements));
}

// Completes out with what the future an async_execution function returned
// gives, once it completes (on any thread: the rest runs on the pool).
void finishLater(const std::weak_ptr<rpc::Agent>& weak_agent, const FuturePtr& returned,
                 bool keep_value, const FuturePtr& out) {
  returned->addCallback([weak_agent, keep_value, out](c10::ivalue::Future& done) {
    auto finish = [keep_value, out, source = FuturePtr::reclaim_copy(&done)] {
      if (source->hasError()) {
        out->setErrorIfNeeded(source->exception_ptr());
        return;
      }
      try {
        RuntimeGil gil;
        py::tuple outcome = pythonCallModule().finish(torch::jit::toPyObject(source->value()), keep_value);
        out->markCompleted(fromOutcome(outcome));
      } catch (...) {
        out->setErrorIfNeeded(std::current_exception());
      }
    };
    if (auto agent = weak_agent.lock()) {
      agent->pool().run(std::move(finish));
    } else {
      finish();
    }
  });
}

}  // namespace

c10::IValue pythonValue(const py::handle& obj) {
  if (THPVariable_Check(obj.ptr())) {
    return THPVariable_Unpack(obj.ptr());
  }
  return torch::jit::toIValue(obj, c10::PyObjectType::get());
}

c10::IValue serializedValue(const py::handle& payload, const py::handle& tensors,
                            const py::handle& rrefs) {
  return c10::ivalue::Tuple::create(
      {THPVariable_Unpack(payload.ptr()),
       tupleOf(tensors, [](py::handle t) -> c10::IValue { return THPVariable_Unpack(t.ptr()); }),
       tupleOf(rrefs, [](py::handle r) -> c10::IValue { return rrefHandle(r); })});
}

FuturePtr futureOf(const py::handle& py_future) {
  return py::cast<std::shared_ptr<torch::jit::PythonFutureWrapper>>(py_future)->fut;
}

rpc::RRefPtr rrefHandle(const py::handle& handle) {
  return c10::IValue(py::cast<torch::jit::Object>(handle)._ivalue()).toCustomClass<rpc::RRef>();
}

rpc::Agent::PythonCallRunner pythonCallRunner(std::weak_ptr<rpc::Agent> agent) {
  pythonCallModule();
  return [agent = std::move(agent)](const std::vector<c10::IValue>& args, bool keep_value) {
    auto out = c10::make_intrusive<c10::ivalue::Future>(c10::AnyType::get());
    RuntimeGil gil;
    TORCH_CHECK(args.size() == 3, "malformed Python call");
    py::tuple outcome = pythonCallModule().run(torch::jit::toPyObject(args[0]),
                                               torch::jit::toPyObject(args[1]),
                                               torch::jit::toPyObject(args[2]), keep_value);
    if (outcome[0].cast<int>() == kFuture) {
      finishLater(agent, futureOf(outcome[1]), keep_value, out);
    } else {
      out->markCompleted(fromOutcome(outcome));
    }
    return out;
  };
}

rpc::Agent::PythonValueCodec pythonValueCodec() {
  pythonCallModule();
  rpc::Agent::PythonValueCodec codec;
  codec.serialize = [](const c10::IValue& value) {
    RuntimeGil gil;
    // As a Python call's result: a value that cannot be pickled raises a
    // RemoteError naming the Python exception.
    return fromOutcome(pythonCallModule().finish(torch::jit::toPyObject(value), false));
  };
  codec.deserialize = [](const c10::IValue& serialized) {
    RuntimeGil gil;
    py::tuple parts = torch::jit::toPyObject(serialized);
    return pythonValue(pythonCallModule().deserialize(parts[0], parts[1], parts[2]));
  };
  return codec;
}

}  // namespace distgrad::python
