"""The method registry and the layering it promises: one list of methods, read everywhere;
library modules never import the command line."""

import ast
import importlib
import inspect
import pathlib

import pytest
import torch

import pathattr
from pathattr import registry
from pathattr.call import Explainer
from pathattr.integrate import Integrator
from pathattr.shared_pass import NAMES

SRC = pathlib.Path(pathattr.__file__).parent


@pytest.mark.parametrize("name", list(registry.METHODS))
def test_every_method_is_exported_and_follows_the_protocol(name):
    info = registry.METHODS[name]
    cls = getattr(pathattr, info.cls)
    assert cls.__module__ == info.module
    params = list(inspect.signature(cls.attribute).parameters.values())[1:]
    names = [p.name for p in params]
    if info.cls == "SmoothGrad":  # passes everything after x to the method it wraps
        assert names[0] == "x" and params[1].kind is inspect.Parameter.VAR_POSITIONAL
        return
    first = [n for n in names if n != "neurons"][:3]
    assert first == ["x", "baselines", "target"], (name, names)
    rest = [p for p in params if p.name not in ("x", "neurons", "baselines", "target")]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in rest), (name, rest)
    for option in ("additional_forward_args", "forward_kwargs", "output"):
        assert option in names, (name, option)
    if info.cls != "SequenceAttribution":  # prepares its own call (the LM adaptation)
        assert issubclass(cls, Explainer), name  # the one place a call is prepared


def test_explain_and_cli_read_the_registry():
    assert set(NAMES) == {n for n, m in registry.METHODS.items() if m.integrator}
    assert set(NAMES) <= set(registry.METHODS)  # one vocabulary
    # every method explain computes is an integrator of its own module, whose options are
    # what its class's attribute takes (the entry's fixed ones aside)
    for name in NAMES:
        m = registry.METHODS[name]
        cls = getattr(importlib.import_module(m.module), m.integrator)
        assert issubclass(cls, Integrator) and callable(cls.of), name
        takes = set(registry.options_of(name)) | (set(inspect.signature(
            getattr(importlib.import_module(m.module), m.cls)).parameters) - {"model"})
        assert set(cls.accepts()) - set(m.attribute) <= takes, (name, cls.accepts())
    offered = registry.available()
    assert offered == [n for n, m in registry.METHODS.items() if m.cli]
    with pytest.raises(pathattr.errors.SettingError, match="^method: unknown method 'nope'") as e:
        registry.parse_methods("ig,nope")
    # the library names the parameter; the command line shows it as its flag
    assert e.value.param == "method"
    assert e.value.flag_message().startswith("--method: unknown method 'nope'")
    assert registry.parse_methods("left_ig,left-ig,input_x_gradient") == ["left-ig",
                                                                           "input-x-gradient"]


def test_library_modules_never_import_the_command_line():
    for f in SRC.rglob("*.py"):
        rel = f.relative_to(SRC)
        if rel.parts[0] == "commands" or rel.name == "cli.py":
            continue
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                mod = node.module.split(".")
                assert "commands" not in mod and "cli" not in mod, (str(rel), node.module)


def test_auto_steps_mean_the_error_controlled_rule_or_a_stated_fixed_count():
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).double().eval()
    x = torch.randn(2, 4, dtype=torch.double)
    r = registry.attribute("ig", model, x, 1, "auto")
    assert r.info["steps"] == "auto" and r.info["tol"] == registry.AUTO_TOL
    assert (r.relative_delta() <= registry.AUTO_TOL).all()
    left = registry.attribute("left-ig", model, x, 1, "auto")  # no error-controlled rule:
    assert left.info["steps"] == 50  # the method's own default
    guided = registry.attribute("guided-ig", model, x, 1, "auto")
    assert guided.info["steps"] == 200
    assert registry.fixed_steps("auto") == registry.AUTO_FIXED and registry.fixed_steps(12) == 12


def test_old_spellings_work_with_a_deprecation_warning():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2)).eval()
    x = torch.randn(2, 3)
    with pytest.warns(DeprecationWarning, match="'left_ig' is deprecated, use 'left-ig'"):
        old = pathattr.explain(model, x, ["left_ig", "idg-uniform"], target=0, steps=4)
    new = pathattr.explain(model, x, ["left-ig"], target=0, steps=4)
    assert list(old) == ["left_ig", "idg-uniform"]  # keyed by what was asked for
    torch.testing.assert_close(old["left_ig"].attributions, new["left-ig"].attributions)
    assert registry.canonical("ig") == "ig" and registry.canonical("nope") == "nope"
    from pathattr.methods.sequence import METHODS

    assert set(METHODS) <= set(registry.METHODS)  # SequenceAttribution speaks the registry's


def test_the_type_checkers_imports_are_the_registrys_classes():
    """``pathattr/__init__.py`` imports every method class eagerly for type checkers; that
    list is checked against the registry, so neither drifts from the other."""
    tree = ast.parse((SRC / "__init__.py").read_text())
    block = next(n for n in ast.walk(tree) if isinstance(n, ast.If)
                 and ast.unparse(n.test) == "TYPE_CHECKING")
    imported = {(f"pathattr.{n.module}" if n.level else n.module, a.asname or a.name)
                for n in ast.walk(block) if isinstance(n, ast.ImportFrom) for a in n.names}
    for cls, module in registry.classes().items():
        package = module.rsplit(".", 1)[0] if module.endswith(".method") else module
        assert (module, cls) in imported or (package, cls) in imported, cls
