"""The one list of attribution methods: ``pathattr/__init__``, the command line, ``explain`` and
``pathattr.run`` all read it.

Each entry says where the class lives (imported lazily, so ``pathattr`` starts fast and a method
family missing from an installation is just not offered), its constructor and fixed
``attribute`` arguments, what it accepts (``space``: the input, or a layer's activations;
``images``: images only), and whether ``explain`` computes it in its shared pass.

Its keys are the one method vocabulary: ``explain``, ``SequenceAttribution``, the command line
and ``pathattr run`` all take these names. The older underscore spellings (``left_ig``,
``idg_uniform``, ``input_x_gradient``) still work for one release: the library warns
(``DeprecationWarning``, ``canonical``), the command line takes both silently.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, overload

from .errors import SettingError

if TYPE_CHECKING:
    from .integrate import Integrator
    from .result import Attribution


@dataclass(frozen=True)
class MethodInfo:
    """One method: ``module.cls(model, **init)``, then ``.attribute(x, **attribute, ...)``.

    ``wraps``: another entry whose instance is passed first (SmoothGrad); ``integrator``: the
    class in ``module`` that integrates it on a path (``integrate.Integrator``), which is how
    ``explain`` and ``SequenceAttribution`` compute it; ``on_layers``: for a method without
    one, the function in ``module`` computing it in a layer's space for
    ``SequenceAttribution`` (``(setup, layers, options, batch_size, reduce) -> Integral``,
    ``options`` with the entry's ``init``);
    ``cli``: offered by ``pathattr explain --method`` (input-space methods that need no
    layer); ``gap``: what its ``delta`` means when it is not a complete method's quadrature
    error. ``attribute``: options the entry fixes (a caller may not change them).
    """

    module: str
    cls: str
    init: dict = field(default_factory=dict)
    attribute: dict = field(default_factory=dict)
    space: Literal["input", "layer"] = "input"
    images: bool = False
    wraps: str | None = None
    integrator: str | None = None
    on_layers: str | None = None
    cli: bool = True
    #: What ``delta`` measures, said on the method's card: None for a complete path method
    #: (``delta`` is the quadrature error of ``F(x) - F(x')``, closed by more steps).
    gap: str | None = None


_M = "pathattr.methods."
IDG_GAP = "not complete by design: δ is IG's gap on the same samples"
DEEPLIFT_GAP = "δ: summation-to-delta, rounding only"
METHODS: dict[str, MethodInfo] = {
    "ig": MethodInfo(_M + "integrated_gradients", "IntegratedGradients",
                     integrator="IGIntegral"),
    "ig-auto": MethodInfo(_M + "integrated_gradients", "IntegratedGradients",
                          attribute={"steps": "auto"}, integrator="IGIntegral"),
    "idg": MethodInfo(_M + "idg", "IntegratedDecisionGradients",
                      integrator="IDGIntegral", gap=IDG_GAP),
    "idg-uniform": MethodInfo(_M + "idg", "IntegratedDecisionGradients",
                              attribute={"sampling": "uniform"},
                              integrator="IDGIntegral", cli=False, gap=IDG_GAP),
    "left-ig": MethodInfo(_M + "left_ig", "LeftIntegratedGradients",
                          integrator="LeftIGIntegral",
                          gap="δ: against F(x(a*)) - F(x'), the path up to its saturation "
                              "point a*"),
    "idgi": MethodInfo(_M + "idgi", "IDGI", integrator="IDGIIntegral"),
    "guided-ig": MethodInfo(_M + "guided_ig", "GuidedIntegratedGradients",
                            gap="δ: the left-Riemann error along the guided path, which moves "
                                "a few features at a time (it shrinks slowly with steps; "
                                "guided-ig-idgi closes it)"),
    "guided-ig-idgi": MethodInfo(_M + "guided_ig", "GuidedIntegratedGradients",
                                 attribute={"idgi": True}),
    "blur-ig": MethodInfo(_M + "blur_ig", "BlurIntegratedGradients", images=True,
                          gap="δ: against F(x) - F(the blurred x), its baseline"),
    "blur-ig-idgi": MethodInfo(_M + "blur_ig", "BlurIntegratedGradients",
                               attribute={"idgi": True}, images=True,
                               gap="δ: against F(x) - F(the blurred x), its baseline"),
    "expected-gradients": MethodInfo(_M + "expected_gradients", "ExpectedGradients",
                                     cli=False, gap="δ: Monte Carlo error of the sampled "
                                                    "paths (see the standard error)"),
    "agi": MethodInfo(_M + "agi", "AdversarialGradientIntegration",
                      gap="not complete: AGI sums paths toward other classes; δ is against "
                          "the score lost on them, not F(x) - F(x')"),
    "deeplift": MethodInfo(_M + "deeplift.method", "DeepLift", init={"nonlinearity": "rescale"},
                           on_layers="on_layers", gap=DEEPLIFT_GAP),
    "deeplift-rc": MethodInfo(_M + "deeplift.method", "DeepLift",
                              init={"nonlinearity": "revealcancel"}, gap=DEEPLIFT_GAP),
    "smoothgrad": MethodInfo(_M + "smoothgrad", "SmoothGrad", wraps="saliency",
                             gap="no completeness: an average of gradients at noisy copies"),
    "saliency": MethodInfo(_M + "gradient", "Saliency",
                           gap="no completeness: the gradient at the input alone"),
    "input-x-gradient": MethodInfo(_M + "gradient", "InputXGradient",
                                   integrator="InputIntegral",
                                   gap="no completeness: one gradient times the input"),
    "layer-ig": MethodInfo(_M + "integrated_gradients", "LayerIntegratedGradients",
                           space="layer", cli=False),
    "conductance": MethodInfo(_M + "conductance", "LayerConductance", space="layer",
                              integrator="ConductanceIntegral", cli=False),
    "neuron-conductance": MethodInfo(_M + "conductance", "NeuronConductance", space="layer",
                                     cli=False),
    "layer-deeplift": MethodInfo(_M + "deeplift.method", "LayerDeepLift", space="layer", cli=False),
}


def classes() -> dict[str, str]:
    """Public class name -> its module, for ``pathattr/__init__``'s lazy exports."""
    return {m.cls: m.module for m in METHODS.values()}


def entry(spec: str) -> MethodInfo:
    """The entry of ``spec``, a name or ``name:option=value...``."""
    return METHODS[parse_entry(spec)[0]]


def integrated(space: str | None = None) -> tuple[str, ...]:
    """The names with an integrator (``explain`` takes them), in registry order; ``space``:
    only those attributing to it ("input": ``SequenceAttribution`` takes these)."""
    return tuple(name for name, m in METHODS.items()
                 if m.integrator and space in (None, m.space))


def sequence_methods() -> tuple[str, ...]:
    """The names ``SequenceAttribution`` takes, in registry order: input-space integrators
    and the methods with an ``on_layers`` function."""
    return tuple(name for name, m in METHODS.items()
                 if m.space == "input" and (m.integrator or m.on_layers))


def integrator(name: str, defaults: dict, options: dict | None = None) -> Integrator:
    """A fresh ``Integrator`` of method ``name``: the caller's ``defaults`` (the call's
    ``steps``, ``rule``, ...; those it does not take are dropped), then ``options`` given for
    this method, then the entry's fixed ``attribute`` options. An option it does not take,
    or one the entry fixes, raises ``SettingError``. Cost: the first import of its module."""
    m = METHODS[name]
    if m.integrator is None:
        raise ValueError(f"method {name!r} has no integrator: it does not run on a path")
    cls = getattr(importlib.import_module(m.module), m.integrator)
    accepted = [k for k in cls.accepts() if k not in m.attribute]
    options = _known(name, dict(options or {}), accepted)
    return cls.of({**{k: v for k, v in defaults.items() if k in accepted}, **options,
                   **m.attribute})


def _known(name: str, options: dict, known: Sequence[str]) -> dict:
    """``options``, each one method ``name`` takes (``known``); else ``SettingError``."""
    for key in options:
        if key not in known:
            raise SettingError(f"method {name!r} has no option {key!r}; its options: "
                               f"{', '.join(known) or 'none'}", param="method")
    return options


def layer_function(name: str) -> Callable | None:
    """Method ``name``'s ``on_layers`` function (None for a method without one). Cost: the
    first import of its module."""
    m = METHODS[name]
    return None if m.on_layers is None else getattr(importlib.import_module(m.module),
                                                    m.on_layers)


def parse_entry(spec: str) -> tuple[str, dict]:
    """``"left-ig:saturation=0.8:steps=64"`` -> ``("left-ig", {"saturation": 0.8,
    "steps": 64})``: values read as Python literals where they are one (numbers, True,
    None), else kept as text. Raises ``SettingError`` for a malformed option."""
    import ast

    name, *rest = spec.split(":")
    options: dict = {}
    for item in filter(None, (p.strip() for p in rest)):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise SettingError(f"method option {item!r} in {spec!r} is not key=value",
                               param="method")
        try:
            options[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            options[key.strip()] = value.strip()
    return name.strip(), options


@overload
def canonical(name: str, known: tuple[str, ...] | None = None) -> str: ...
@overload
def canonical(name: object, known: tuple[str, ...] | None = None) -> object: ...
def canonical(name: object, known: tuple[str, ...] | None = None) -> object:
    """``name`` in the registry's spelling: an old underscore spelling (``left_ig``) becomes
    the registry's (``left-ig``) with a ``DeprecationWarning``; anything else is returned as it
    is, for the caller to refuse. ``known``: the names the caller accepts (default: all)."""
    known = tuple(METHODS) if known is None else known
    if isinstance(name, str) and name not in known and name.replace("_", "-") in known:
        import warnings

        new = name.replace("_", "-")
        warnings.warn(f"method name {name!r} is deprecated, use {new!r} (the old spelling "
                      f"goes in the next release)", DeprecationWarning, stacklevel=3)
        return new
    return name


def available() -> list[str]:
    """Names the command offers (``cli``) whose module is installed, found without importing."""
    return [name for name, m in METHODS.items()
            if m.cli and importlib.util.find_spec(m.module) is not None]


def parse_methods(spec: str, offered: Sequence[str] | None = None, where: str = ""
                  ) -> list[str]:
    """``"ig,left-ig:saturation=0.8"`` or ``"all"`` -> method entries, in the order given,
    without repeats (``left_ig`` is read as ``left-ig``: the language-model spelling works
    here too); an entry keeps its options (``parse_entry``), each checked against what the
    method's ``attribute`` takes. ``offered``: the names accepted (default: ``available()``);
    ``where``: the context said in the error (``"with --generate"``). Raises
    ``SettingError`` naming an unknown method or option."""
    names = list(available() if offered is None else offered)
    if spec.strip() == "all":
        return names
    chosen = []
    for entry in filter(None, (e.strip() for e in spec.split(","))):
        name, options = parse_entry(entry)
        name = name.replace("_", "-")
        if name not in names:
            raise SettingError(f"unknown method {name!r}{' ' + where if where else ''}; "
                               f"available: {', '.join(names)}, or all", param="method")
        _known(name, options, options_of(name))
        chosen.append(":".join([name, *entry.split(":")[1:]]))
    if not chosen:
        raise SettingError("no method given", param="method")
    return list(dict.fromkeys(chosen))


def options_of(name: str) -> list[str]:
    """The keyword options method ``name``'s ``attribute`` takes that a caller may set (not
    the input, target or forward arguments, nor what the entry fixes). Cost: the first import
    of its module."""
    fixed = METHODS[name].attribute
    return [k for k, p in _parameters(name).items()
            if p.kind is p.KEYWORD_ONLY and k not in fixed and k not in _NOT_OPTIONS]


def _parameters(name: str) -> Mapping[str, inspect.Parameter]:
    """The parameters of method ``name``'s ``attribute``: its options are declared there."""
    m = METHODS[name]
    return inspect.signature(getattr(importlib.import_module(m.module), m.cls).attribute
                             ).parameters


#: ``attribute`` keywords that are the call's, not a method's setting
_NOT_OPTIONS = ("batch_size", "additional_forward_args", "forward_kwargs", "output",
                "layer_noise", "progress")


def make(name: str, model: object, *args: object) -> Any:
    """A fresh instance of method ``name`` for ``model`` (``args``: a layer, for layer methods).
    Cost: the first import of its module."""
    m = METHODS[name]
    factory = getattr(importlib.import_module(m.module), m.cls)
    if m.wraps:
        return factory(make(m.wraps, model, *args), **m.init)
    return factory(model, *args, **m.init)


#: The error ``steps="auto"`` asks of methods with an error-controlled rule, and the step
#: count it means for a caller that needs a number (the library's default, 50).
AUTO_TOL, AUTO_FIXED = 0.01, 50


def fixed_steps(steps: int | str) -> int:
    """``steps`` for a method without an error-controlled rule (``"auto"``: ``AUTO_FIXED``)."""
    return AUTO_FIXED if steps == "auto" else int(steps)


def step_options(name: str, steps: int | str) -> dict:
    """The ``attribute`` keywords that give method ``name`` the step count ``steps`` (see
    ``attribute``), with the entry's fixed ones. Cost: the first import of its module."""
    params = _parameters(name)
    out: dict = {}
    if "steps" in params and steps == "auto":
        if "tol" in params:
            out.update(steps="auto", tol=AUTO_TOL)
    elif "steps" in params:
        out["steps"] = steps
    return {**out, **METHODS[name].attribute}


def attribute(entry: str, model: object, x: object, target: int, steps: int | str
              ) -> Attribution:
    """Method ``entry`` (a name, or ``name:option=value...``, ``parse_entry``) on ``x`` for
    class ``target``. ``steps`` reaches methods whose ``attribute`` has a ``steps`` parameter
    (path methods); the others (DeepLIFT, gradients) have no path to discretise.
    ``steps="auto"``: the error-controlled rule to ``AUTO_TOL`` where the method has one (a
    ``tol`` parameter), else the method's own default (50, Guided IG 200, Blur IG 100). The
    entry's options win over ``steps``. Cost: the method's."""
    name, options = parse_entry(entry)
    return make(name, model).attribute(x, target=target, **step_options(name, steps),
                                       **options)
