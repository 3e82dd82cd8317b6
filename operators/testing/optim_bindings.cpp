#include "testing/unit_bindings.h"

#include "optim/adagrad.h"
#include "optim/messages.h"
#include "optim/optimizer_registry.h"
#include "optim/sgd.h"

#include <ATen/core/grad_mode.h>
#include <torch/csrc/jit/python/pybind_utils.h>

#include <optional>

namespace distgrad::testing {

namespace py = pybind11;
using namespace distgrad::optim;

namespace {

// An optimizer held by the test (and by the registries it is added to).
struct TestOptimizer {
  std::shared_ptr<LocalOptimizer> optimizer;
};

// grads: one per parameter, None for a parameter without a gradient. Grad
// mode off, as the step request runs it.
void step(TestOptimizer& self, const std::vector<std::optional<at::Tensor>>& grads) {
  std::vector<at::Tensor> defined;
  for (const auto& grad : grads) {
    defined.push_back(grad.value_or(at::Tensor()));
  }
  at::NoGradGuard no_grad;
  self.optimizer->step(defined);
}

struct TestEntry {
  std::unique_ptr<OptimizerRegistry::Entry> entry;
};

}  // namespace

void initOptimBindings(py::module& m) {
  py::class_<TestOptimizer>(m, "LocalOptimizer").def("step", &step);
  m.def(
      "Sgd",
      [](std::vector<at::Tensor> params, double lr, double momentum, double dampening,
         double weight_decay, bool nesterov) {
        SgdOptions options{lr, momentum, dampening, weight_decay, nesterov};
        return TestOptimizer{std::make_shared<Sgd>(std::move(params), options)};
      },
      py::arg("params"), py::arg("lr"), py::arg("momentum") = 0.0, py::arg("dampening") = 0.0,
      py::arg("weight_decay") = 0.0, py::arg("nesterov") = false);
  // steps and sums: the state torch.optim.Adagrad made for params.
  m.def(
      "Adagrad",
      [](std::vector<at::Tensor> params, std::vector<at::Tensor> steps,
         std::vector<at::Tensor> sums, double lr, double lr_decay, double weight_decay,
         double eps) {
        AdagradOptions options{lr, lr_decay, weight_decay, eps};
        return TestOptimizer{std::make_shared<Adagrad>(std::move(params), options,
                                                       std::move(steps), std::move(sums))};
      },
      py::arg("params"), py::arg("steps"), py::arg("sums"), py::arg("lr"),
      py::arg("lr_decay") = 0.0, py::arg("weight_decay") = 0.0, py::arg("eps") = 1e-10);
  py::class_<TestEntry>(m, "OptimizerEntry")
      .def_property_readonly("id", [](const TestEntry& self) { return self.entry->id(); });
  py::class_<OptimizerRegistry>(m, "OptimizerRegistry")
      .def(py::init<>())
      // The entry refers to its registry: keep the registry alive meanwhile.
      .def("add", [](OptimizerRegistry& self, const TestOptimizer& optimizer) {
             return TestEntry{self.add(optimizer.optimizer)};
           },
           py::keep_alive<0, 1>())
      // Whether id finds this very optimizer.
      .def("holds", [](const OptimizerRegistry& self, int64_t id, const TestOptimizer& optimizer) {
        auto found = self.find(id);
        return found != nullptr && found.get() == optimizer.optimizer.get();
      })
      .def("size", &OptimizerRegistry::size);
  m.def("step_optimizer_to_args", [](int64_t optimizer_id, int64_t context_id, bool carried) {
    auto args = StepOptimizer{optimizer_id, context_id, carried}.toArgs();
    return torch::jit::toPyObject(c10::ivalue::Tuple::create(std::move(args)));
  });
  m.def("step_optimizer_from_args", [](const py::tuple& args) {
    std::vector<c10::IValue> values;
    for (const auto& arg : args) {
      values.push_back(torch::jit::toIValue(arg, c10::AnyType::get()));
    }
    auto message = StepOptimizer::fromArgs(values);
    return std::make_tuple(message.optimizer_id, message.context_id, message.context_carried);
  });
}

}  // namespace distgrad::testing
