"""docs/api.md is what tools/api_reference.py makes of the docstrings, and the
docstrings tell a user what they need: every public name of distgrad.rpc,
distgrad.autograd, distgrad.optim and distgrad.nn (and of distgrad itself and
the modules their ``__all__`` names) has one, and every parameter of a
public function, constructor or method is mentioned in its docstring.
Nothing here starts a job."""

import importlib
import inspect
import pkgutil
import re
import typing

import torch

import distgrad
import distgrad.rpc as rpc
from tests.conftest import ROOT
from tools import api_reference

# Parameters a docstring need not mention: {qualified name: {parameter: why}}.
# Keep it short: where a user would want a parameter explained, explain it in
# the docstring instead. (Empty: every parameter is explained where it is.)
ALLOWLIST: typing.Dict[str, typing.Dict[str, str]] = {}


def documented():
    """(qualified name, object, docstring, parameters or None) of every public
    name of the documented modules and every public method and property of
    their classes. Parameters are those a user passes (no self), None for
    what takes none (constants, properties, exceptions, enums)."""
    entries = []
    for module in api_reference.documented_modules():
        constants = api_reference.attribute_docstrings(module)
        for name in api_reference.public_names(module):
            value = getattr(module, name)
            qualified = f"{module.__name__}.{name}"
            if inspect.ismodule(value):
                entries.append((qualified, value, api_reference.own_doc(value), None))
            elif inspect.isclass(value):
                entries.append((qualified, value, class_doc(value), constructor_parameters(value)))
                for member, raw in api_reference.public_members(value):
                    entries.append(member_entry(f"{qualified}.{member}", raw))
            elif callable(value):
                entries.append((qualified, value, api_reference.own_doc(value),
                                list(inspect.signature(value).parameters)))
            else:
                entries.append((qualified, value, constants.get(name, ""), None))
    return entries


def class_doc(cls):
    init = vars(cls).get("__init__")
    init_doc = api_reference.own_doc(init) if inspect.isfunction(init) else ""
    return "\n\n".join(doc for doc in (api_reference.own_doc(cls), init_doc) if doc)


def constructor_parameters(cls):
    """The parameters of the constructor distgrad defines (a NamedTuple's
    fields), or None when it is not distgrad's (exceptions, enums)."""
    if api_reference.is_named_tuple(cls):
        return list(cls._fields)
    init = getattr(cls, "__init__")
    if not inspect.isfunction(init) or not init.__module__.startswith("distgrad"):
        return None
    return list(inspect.signature(init).parameters)[1:]


def member_entry(qualified, raw):
    if isinstance(raw, property):
        return qualified, raw, api_reference.own_doc(raw), None
    function = raw.__func__ if isinstance(raw, (staticmethod, classmethod)) else raw
    parameters = list(inspect.signature(function).parameters)
    if not isinstance(raw, staticmethod):
        parameters = parameters[1:]
    return qualified, function, api_reference.own_doc(function), parameters


def test_docs_api_md_is_up_to_date():
    expected = api_reference.render()
    current = api_reference.OUTPUT.read_text() if api_reference.OUTPUT.exists() else ""
    assert current == expected, ("docs/api.md is out of date; regenerate it with python tools/api_reference.py:\n"
                                 + api_reference.diff(current, expected))


def test_the_reference_has_no_address_or_local_path():
    text = api_reference.render()
    assert " at 0x" not in text
    assert str(ROOT) not in text and "site-packages" not in text


def test_every_public_module_defines_a_correct___all__():
    """Every module of the package but the private ones and the example
    programs: its __all__ names what it defines, once each; and the
    documented modules list every function and class of distgrad they
    expose under a public name."""
    modules = []

    def walk(package):
        for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
            last = info.name.rpartition(".")[2]
            if last.startswith("_") or info.name == "distgrad.examples":
                continue
            module = importlib.import_module(info.name)
            modules.append(module)
            if info.ispkg:
                walk(module)

    walk(distgrad)
    assert {"distgrad.rpc.api", "distgrad.rpc.profiling", "distgrad.errors", "distgrad.nn.remote_module"} \
        <= {module.__name__ for module in modules}
    for module in [distgrad, *modules]:
        api_reference.public_names(module)  # raises naming what is wrong
    for module in api_reference.documented_modules():
        exposed = {name for name, value in vars(module).items()
                   if not name.startswith("_") and (inspect.isclass(value) or inspect.isfunction(value))
                   and value.__module__.startswith("distgrad")}
        assert exposed <= set(module.__all__), f"{module.__name__} exposes {exposed - set(module.__all__)}"


def test_every_public_name_has_a_docstring():
    missing = [qualified for qualified, _, doc, _ in documented() if not doc.strip()]
    assert not missing, f"no docstring: {missing}"


def test_every_parameter_is_mentioned_in_its_docstring():
    unmentioned = []
    for qualified, _, doc, parameters in documented():
        for parameter in parameters or ():
            if parameter in ALLOWLIST.get(qualified, {}):
                continue
            if not re.search(rf"(?<![\w]){re.escape(parameter)}(?![\w])", doc):
                unmentioned.append(f"{qualified}: {parameter}")
    assert not unmentioned, f"parameters their docstring does not mention: {unmentioned}"


def test_the_allowlist_names_parameters_that_exist():
    parameters = {qualified: set(parameters or ()) for qualified, _, _, parameters in documented()}
    for qualified, allowed in ALLOWLIST.items():
        assert set(allowed) <= parameters.get(qualified, set()), qualified


def test_signatures_of_cpp_bound_callables_and_rref_generics():
    namer = api_reference.Namer(api_reference.documented_modules())
    # pybind11 functions have no inspect signature: the first line of their docstring is one.
    assert api_reference.signature_text(distgrad._C._current_context_id, namer) == "() -> int"

    def uses_rrefs(first: rpc.RRef[torch.Tensor], rest: typing.List[rpc.RRef[int]]) -> "rpc.RRef[int]":
        pass

    assert api_reference.signature_text(uses_rrefs, namer) == "(first: RRef, rest: List[RRef]) -> rpc.RRef[int]"
