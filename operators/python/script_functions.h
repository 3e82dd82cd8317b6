#pragma once

#include <ATen/core/jit_type.h>
#include <torch/csrc/jit/api/compilation_unit.h>

#include <mutex>
#include <string>
#include <unordered_map>

namespace distgrad::python {

// Finds a TorchScript function in the Python compilation unit; if it is not
// there, imports the longest importable module prefix of its name and looks
// again. First resolutions are serialized and end with the function
// compiled: TorchScript compiles lazily, and a second thread reaching a
// function mid-compilation (the GIL changes hands while the compiler calls
// back into Python) fails with RecursiveMethodCallError.
class PythonScriptFunctions {
 public:
  PythonScriptFunctions();

  // Throws c10::ValueError naming an unknown function.
  torch::jit::Function* operator()(const std::string& name);

  // A TorchScript class, found the same way (for objects in RPC messages).
  c10::StrongTypePtr resolveClass(const c10::QualifiedName& qualname);

 private:
  // "__torch__.a.b.fn": tries to import a.b, then a. Called with the GIL.
  static void importModuleOf(const c10::QualifiedName& qualname);

  const std::shared_ptr<torch::jit::CompilationUnit> cu_;
  std::mutex resolving_mu_;  // held while resolving a name the first time, before the GIL
  std::mutex mu_;  // guards resolved_
  std::unordered_map<std::string, torch::jit::Function*> resolved_;
};

}  // namespace distgrad::python
