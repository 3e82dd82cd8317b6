#include "optim/adagrad.h"
#include "optim/native_step.h"
#include "optim/optimizer_registry.h"
#include "optim/sgd.h"
#include "optim/step_mutex.h"
#include "python/bindings.h"
#include "python/interrupt.h"

#include <chrono>

namespace distgrad::python {

namespace py = pybind11;

namespace {

// The owner's side of a native optimizer: registered while this object lives
// (it is the value of the DistributedOptimizer's RRef).
struct NativeOptimizer {
  std::unique_ptr<optim::OptimizerRegistry::Entry> entry;
};

// `with _C._StepLock():` holds optim::stepMutex() (waiting without the GIL;
// Ctrl-C ends the wait).
struct StepLock {};

}  // namespace

void initOptimBindings(py::module& m) {
  py::class_<NativeOptimizer>(m, "_NativeOptimizer")
      .def_property_readonly("id", [](const NativeOptimizer& self) { return self.entry->id(); })
      .def(
          "step",
          [](const NativeOptimizer& self, int64_t context_id) {
            optim::stepHere(self.entry->id(), context_id, false);
          },
          py::call_guard<py::gil_scoped_release>());
  m.def("_native_sgd", [](std::vector<at::Tensor> params, double lr, double momentum,
                          double dampening, double weight_decay, bool nesterov) {
    optim::SgdOptions options{lr, momentum, dampening, weight_decay, nesterov};
    auto sgd = std::make_shared<optim::Sgd>(std::move(params), options);
    return NativeOptimizer{optim::OptimizerRegistry::get().add(std::move(sgd))};
  });
  m.def("_native_adagrad", [](std::vector<at::Tensor> params, double lr, double lr_decay,
                              double weight_decay, double eps, std::vector<at::Tensor> steps,
                              std::vector<at::Tensor> sums) {
    optim::AdagradOptions options{lr, lr_decay, weight_decay, eps};
    auto adagrad = std::make_shared<optim::Adagrad>(std::move(params), options, std::move(steps),
                                                    std::move(sums));
    return NativeOptimizer{optim::OptimizerRegistry::get().add(std::move(adagrad))};
  });
  m.def("_native_optimizer_step", [](const std::vector<std::pair<int, int64_t>>& targets,
                                     int64_t context_id) {
    std::vector<optim::StepTarget> steps;
    for (const auto& [rank, id] : targets) {
      steps.push_back({rank, id});
    }
    py::gil_scoped_release no_gil;
    auto futures = optim::stepAll(steps, context_id);
    for (const auto& future : futures) {
      waitInterruptibly(future);
    }
    optim::throwFirstError(steps, futures);
  });
  py::class_<StepLock>(m, "_StepLock")
      .def(py::init<>())
      .def("__enter__",
           [](StepLock&) {
             py::gil_scoped_release no_gil;
             waitInterruptibly(
                 [](double seconds) {
                   return optim::stepMutex().try_lock_for(std::chrono::duration<double>(seconds));
                 },
                 0);
           })
      .def("__exit__", [](StepLock&, const py::args&) {
        optim::stepMutex().unlock();
        return false;
      });
}

}  // namespace distgrad::python
