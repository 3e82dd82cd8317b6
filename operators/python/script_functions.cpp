#include "python/script_functions.h"

#include "python/gil.h"

#include <torch/csrc/jit/python/pybind_utils.h>

namespace distgrad::python {

namespace py = pybind11;

PythonScriptFunctions::PythonScriptFunctions() : cu_(torch::jit::get_python_cu()) {}

torch::jit::Function* PythonScriptFunctions::operator()(const std::string& name) {
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

c10::StrongTypePtr PythonScriptFunctions::resolveClass(const c10::QualifiedName& qualname) {
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

void PythonScriptFunctions::importModuleOf(const c10::QualifiedName& qualname) {
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

}  // namespace distgrad::python
