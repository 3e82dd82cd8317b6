#include "autograd/dist_autograd.h"
#include "common/errors.h"
#include "python/gil.h"
#include "python/interrupt.h"
#include "python/bindings.h"
#include "python/python_values.h"
#include "rpc/agent.h"

#include <pybind11/functional.h>
#include <torch/csrc/jit/python/pybind_utils.h>
#include <torch/csrc/jit/runtime/operator.h>

namespace distgrad::python {

namespace py = pybind11;
using rpc::Agent;
using rpc::CallKind;
using rpc::FuturePtr;
using rpc::Request;

namespace {

// Finds a TorchScript function in the Python compilation unit; if it is not
// there, imports the longest importable module prefix of its name and looks
// again. First resolutions are serialized and end with the function
// compiled: TorchScript compiles lazily, and a second thread reaching a
// function mid-compilation (the GIL changes hands while the compiler calls
// back into Python) fails with RecursiveMethodCallError.
class PythonScriptFunctions {
 public:
  PythonScriptFunctions() : cu_(torch::jit::get_python_cu()) {}

  torch::jit::Function* operator()(const std::string& name) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = resolved_.find(name);
      if (it != resolved_.end()) {
        return it->second;
      }
    }
    std::lock_guard<std::mutex> resolving(resolving_mu_);
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = resolved_.find(name);
      if (it != resolved_.end()) {
        return it->second;
      }
    }
    torch::jit::Function* fn = nullptr;
    {
      RuntimeGil gil;
      c10::QualifiedName qualname(name);
      fn = cu_->find_function(qualname);
      if (!fn) {
        importModuleOf(qualname);
        fn = cu_->find_function(qualname);
      }
      TORCH_CHECK_VALUE(fn != nullptr, "unknown TorchScript function '", name,
                        "' (is it decorated with @torch.jit.script in a module importable on "
                        "this worker?)");
      fn->ensure_defined();
    }
    std::lock_guard<std::mutex> lock(mu_);
    resolved_.emplace(name, fn);
    return fn;
  }

  // A TorchScript class, found the same way (for objects in RPC messages).
  c10::StrongTypePtr resolveClass(const c10::QualifiedName& qualname) {
    std::lock_guard<std::mutex> resolving(resolving_mu_);
    RuntimeGil gil;
    c10::ClassTypePtr cls = cu_->get_class(qualname);
    if (!cls) {
      importModuleOf(qualname);
      cls = cu_->get_class(qualname);
    }
    TORCH_CHECK_VALUE(cls != nullptr, "unknown TorchScript class '", qualname.qualifiedName(),
                      "' (is its module importable on this worker?)");
    return c10::StrongTypePtr(cu_, cls);
  }

 private:
  // "__torch__.a.b.fn": tries to import a.b, then a. Called with the GIL.
  static void importModuleOf(const c10::QualifiedName& qualname) {
    std::vector<std::string> atoms = qualname.atoms();
    for (size_t n = atoms.size() - 1; n > 1; --n) {
      std::string module;
      for (size_t i = 1; i < n; ++i) {
        module += (i > 1 ? "." : "") + atoms[i];
      }
      try {
        py::module::import(module.c_str());
        return;
      } catch (py::error_already_set&) {
        // Not a module; try a shorter prefix.
      }
    }
  }

  const std::shared_ptr<torch::jit::CompilationUnit> cu_;
  std::mutex resolving_mu_;  // held while resolving a name the first time, before the GIL
  std::mutex mu_;  // guards resolved_
  std::unordered_map<std::string, torch::jit::Function*> resolved_;
};

// Sends the request. With no Python future, waits (without the GIL, but
// Ctrl-C ends the wait) and returns the result; otherwise completes py_future from the agent's
// callback pool (never on a thread the runtime needs), converting the value
// with decode if given.
py::object invoke(int dst, Request request, double timeout, const py::object& py_future,
                  const py::object& decode = py::none()) {
  auto agent = Agent::current();
  FuturePtr result;
  {
    py::gil_scoped_release no_gil;
    result = agent->call(dst, std::move(request), timeout);
    if (py_future.is_none()) {
      waitInterruptibly(result);
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
  result->addCallback([agent, target, decoder](c10::ivalue::Future& done) {
    FuturePtr source = c10::intrusive_ptr<c10::ivalue::Future>::reclaim_copy(&done);
    // User callbacks run in the completion: not on the runtime's pool.
    agent->callbacks().run([target, decoder, source] {
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
  });
  return py_future;
}

// Binds Python arguments to a TorchScript function's schema, converting each
// with the schema's type; defaults fill what is not given.
torch::jit::Stack stackForSchema(const c10::FunctionSchema& schema, const py::args& args,
                                 const py::kwargs& kwargs) {
  const auto& params = schema.arguments();
  TORCH_CHECK_TYPE(args.size() <= params.size(), schema.name(), "() takes at most ",
                   params.size(), " arguments but ", args.size(), " were given");
  torch::jit::Stack stack;
  size_t used_kwargs = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    const auto& param = params[i];
    py::handle value;
    if (i < args.size()) {
      TORCH_CHECK_TYPE(!param.kwarg_only(), schema.name(), "() argument '", param.name(),
                       "' is keyword-only");
      value = args[i];
    } else if (kwargs.contains(param.name().c_str())) {
      value = kwargs[param.name().c_str()];
      ++used_kwargs;
    } else {
      TORCH_CHECK_TYPE(param.default_value().has_value(), schema.name(),
                       "() is missing argument '", param.name(), "'");
      stack.push_back(*param.default_value());
      continue;
    }
    try {
      stack.push_back(torch::jit::toIValue(value, param.real_type(), param.N()));
    } catch (const std::exception& e) {
      TORCH_CHECK_TYPE(false, schema.name(), "() argument '", param.name(), "' expected ",
                       param.real_type()->repr_str(), ": ", e.what());
    }
  }
  TORCH_CHECK_TYPE(used_kwargs == kwargs.size(), schema.name(),
                   "() got an unexpected keyword argument (its parameters are ", schema, ")");
  return stack;
}

// Converts an argument of a call made by name, where no schema is known on
// the caller: tensors, numbers, strings, None, and tuples or lists of them.
c10::IValue toUntypedIValue(const py::handle& obj) {
  if (THPVariable_Check(obj.ptr())) {
    return THPVariable_Unpack(obj.ptr());
  }
  if (obj.is_none()) {
    return c10::IValue();
  }
  if (py::isinstance<py::bool_>(obj)) {
    return obj.cast<bool>();
  }
  if (py::isinstance<py::int_>(obj)) {
    return obj.cast<int64_t>();
  }
  if (py::isinstance<py::float_>(obj)) {
    return obj.cast<double>();
  }
  if (py::isinstance<py::str>(obj)) {
    return obj.cast<std::string>();
  }
  if (py::isinstance<py::tuple>(obj)) {
    std::vector<c10::IValue> elements;
    for (const auto& e : obj) {
      elements.push_back(toUntypedIValue(e));
    }
    return c10::ivalue::Tuple::create(std::move(elements));
  }
  if (py::isinstance<py::list>(obj)) {
    std::vector<c10::IValue> elements;
    for (const auto& e : obj) {
      elements.push_back(toUntypedIValue(e));
    }
    // Lists travel with the type of their first element, like TorchScript's.
    c10::TypePtr type = elements.empty() ? c10::TensorType::get() : elements[0].type();
    c10::impl::GenericList list(type);
    for (auto& e : elements) {
      list.push_back(std::move(e));
    }
    return list;
  }
  // Objects of TorchScript classes, such as distgrad.rpc.RRef.
  py::object script_class =
      py::module::import("torch.jit._state").attr("_get_script_class")(obj.get_type());
  if (!script_class.is_none()) {
    return torch::jit::toIValue(obj, py::cast<c10::ClassTypePtr>(script_class));
  }
  TORCH_CHECK_TYPE(false, "cannot pass a ", std::string(py::str(obj.get_type())),
                   " to a function called by name; pass the function itself instead");
}

int rankOf(const py::object& to) {
  auto agent = Agent::current();
  if (py::isinstance<py::str>(to)) {
    return agent->worker(to.cast<std::string>()).rank;
  }
  if (py::isinstance<py::int_>(to)) {
    return agent->worker(to.cast<int>()).rank;
  }
  TORCH_CHECK_TYPE(false, "a destination is a worker name, a rank or a WorkerInfo, got ",
                   std::string(py::str(to.get_type())));
}

}  // namespace

void initRpcBindings(py::module& m) {
  m.def(
      "_agent_init",
      [](const std::string& name, int rank, int world_size,
         std::function<py::bytes(py::bytes)> mac, std::function<bool(py::bytes, py::bytes)> verify,
         int num_worker_threads, double timeout, const std::string& host,
         uint64_t max_message_bytes, uint64_t shared_memory_bytes, double handshake_timeout,
         double frame_timeout) {
        rpc::AgentOptions options;
        options.name = name;
        options.rank = rank;
        options.world_size = world_size;
        // The job key stays in Python, with its vetted HMAC (distgrad._job_key).
        options.auth.mac = [mac](const std::string& message) {
          RuntimeGil gil;
          return std::string(mac(py::bytes(message)));
        };
        options.auth.verify = [verify](const std::string& message, const std::string& tag) {
          RuntimeGil gil;
          return verify(py::bytes(message), py::bytes(tag));
        };
        options.num_worker_threads = num_worker_threads;
        options.default_timeout_seconds = timeout;
        options.limits.max_data_bytes = max_message_bytes;
        options.limits.max_meta_bytes = std::min<uint64_t>(max_message_bytes, UINT32_MAX);
        options.shared_memory_bytes = shared_memory_bytes;
        options.handshake_timeout_seconds = handshake_timeout;
        options.frame_stall_timeout_seconds = frame_timeout;
        auto agent = std::make_shared<Agent>(options);
        autograd::install(*agent);
        auto functions = std::make_shared<PythonScriptFunctions>();
        agent->setScriptFunctionResolver(
            [functions](const std::string& name) { return (*functions)(name); });
        rpc::setClassResolver(
            [functions](const c10::QualifiedName& name) { return functions->resolveClass(name); });
        agent->setPythonCallRunner(pythonCallRunner(agent));
        agent->setPythonValueCodec(pythonValueCodec());
        int port = agent->listen(host);
        Agent::install(agent);
        return port;
      },
      "Creates and installs this process's RPC agent; returns its listening port.");
  m.def(
      "_agent_start",
      [](std::vector<std::string> names, std::vector<std::string> addresses) {
        Agent::current()->start(std::move(names), std::move(addresses));
      });
  m.def(
      "_agent_wait_idle",
      [](double timeout) {
        auto agent = Agent::current();
        return waitInterruptibly([&agent](double seconds) { return agent->waitUntilIdle(seconds); },
                                 timeout);
      },
      py::call_guard<py::gil_scoped_release>());
  m.def(
      "_agent_shutdown",
      [] {
        if (auto agent = Agent::currentOrNull()) {
          agent->shutdown();
          Agent::uninstall();
          autograd::uninstall();
        }
      },
      py::call_guard<py::gil_scoped_release>());
  m.def("_agent_is_running", [] { return Agent::currentOrNull() != nullptr; });
  m.def("_agent_default_timeout", [] { return Agent::current()->defaultTimeout(); });
  m.def("_agent_set_default_timeout",
        [](double seconds) { Agent::current()->setDefaultTimeout(seconds); });
  m.def("_agent_debug_info", [] {
    auto agent = Agent::current();
    std::map<std::string, int64_t> info{
        {"num_pending_calls", static_cast<int64_t>(agent->numPendingCalls())},
        {"num_active_requests", static_cast<int64_t>(agent->numActiveRequests())},
        {"shared_memory_bytes_in_use", static_cast<int64_t>(agent->sharedMemoryInUse())}};
    for (const auto& [name, count] : agent->rrefs().debugInfo()) {
      info.emplace(name, count);
    }
    return info;
  });
  m.def("_agent_lost_peers", [] { return Agent::current()->lostPeers(); });
  m.def("_agent_probe", [](int rank) { Agent::current()->probe(rank); },
        py::call_guard<py::gil_scoped_release>());
  m.def("_agent_serve_with_this_thread_state", [](bool on) {
    Agent::current()->setServingState(on ? std::make_shared<const at::ThreadLocalState>() : nullptr);
  });
  m.def("_rank_of", &rankOf);

  // A call is built by one of the *_request functions, then sent by
  // _invoke (rpc_sync, rpc_async) or _remote.
  py::class_<Request>(m, "_Request");
  m.def("_builtin_request", [](const std::string& name, const py::args& args,
                               const py::kwargs& kwargs) {
    // Resolved here, like torch's own Python bindings resolve overloads,
    // so the callee runs the exact overload with a complete stack.
    const auto& ops = torch::jit::getAllOperatorsFor(c10::Symbol::fromQualString(name));
    TORCH_CHECK_VALUE(!ops.empty(), "unknown builtin operator '", name, "'");
    auto [op, stack] = torch::jit::getOpWithStack(ops, args, kwargs);
    const auto& op_name = op->schema().operator_name();
    Request request;
    request.kind = CallKind::kBuiltin;
    request.target = op_name.overload_name.empty() ? op_name.name
                                                   : op_name.name + "." + op_name.overload_name;
    request.args = std::move(stack);
    return request;
  });
  m.def("_script_request", [](const torch::jit::StrongFunctionPtr& fn, const py::args& args,
                              const py::kwargs& kwargs) {
    Request request;
    request.kind = CallKind::kScript;
    request.target = fn.function_->qualname().qualifiedName();
    request.args = stackForSchema(fn.function_->getSchema(), args, kwargs);
    return request;
  });
  m.def("_named_request", [](const std::string& name, const py::tuple& args) {
    std::vector<c10::IValue> values;
    for (const auto& a : args) {
      values.push_back(toUntypedIValue(a));
    }
    return Request::byName(name, std::move(values));
  });
  m.def("_python_request", [](const py::handle& payload, const py::handle& tensors,
                              const py::handle& rrefs) {
    Request request;
    request.kind = CallKind::kPython;
    c10::IValue serialized = serializedValue(payload, tensors, rrefs);
    const auto& parts = serialized.toTupleRef().elements();
    request.args.assign(parts.begin(), parts.end());
    return request;
  });
  m.def("_invoke", [](int dst, Request request, double timeout, const py::object& py_future,
                      const py::object& decode) {
    return invoke(dst, std::move(request), timeout, py_future, decode);
  });
  m.def("_remote", [](int dst, Request request, double timeout) {
    auto agent = Agent::current();
    rpc::RRefPtr rref;
    {
      py::gil_scoped_release no_gil;
      rref = agent->remote(dst, std::move(request), timeout);
    }
    return torch::jit::toPyObject(c10::IValue(std::move(rref)));
  });
}

}  // namespace distgrad::python
