#include "python/call_arguments.h"

#include <torch/csrc/jit/python/pybind_utils.h>

namespace distgrad::python {

namespace py = pybind11;

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
      py::module::import("distgrad._torch_private").attr("script_class_of")(obj.get_type());
  if (!script_class.is_none()) {
    return torch::jit::toIValue(obj, py::cast<c10::ClassTypePtr>(script_class));
  }
  TORCH_CHECK_TYPE(false, "cannot pass a ", std::string(py::str(obj.get_type())),
                   " to a function called by name; pass the function itself instead");
}

}  // namespace distgrad::python
