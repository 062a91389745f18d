"""The attribution methods the command can run, imported lazily so that ``pathattr`` starts
fast and a method family missing from this installation just is not offered."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import time

from . import UsageError

#: name -> (module, class, constructor keyword arguments). A ``"wraps"`` argument names another
#: entry whose instance is passed first (SmoothGrad averages that method over noisy copies); an
#: ``"attribute"`` argument holds fixed keyword arguments of ``attribute``.
METHODS: dict[str, tuple[str, str, dict]] = {
    "ig": ("pathattr.methods.integrated_gradients", "IntegratedGradients", {}),
    "ig-auto": ("pathattr.methods.integrated_gradients", "IntegratedGradients",
                {"attribute": {"steps": "auto", "tol": 0.01}}),
    "idg": ("pathattr.methods.idg", "IntegratedDecisionGradients", {}),
    "left-ig": ("pathattr.methods.left_ig", "LeftIntegratedGradients", {}),
    "guided-ig": ("pathattr.methods.guided_ig", "GuidedIntegratedGradients", {}),
    "blur-ig": ("pathattr.methods.blur_ig", "BlurIntegratedGradients", {}),
    "agi": ("pathattr.methods.agi", "AdversarialGradientIntegration", {}),
    "deeplift": ("pathattr.methods.deeplift", "DeepLift", {"rule": "rescale"}),
    "deeplift-rc": ("pathattr.methods.deeplift", "DeepLift", {"rule": "revealcancel"}),
    "smoothgrad": ("pathattr.methods.smoothgrad", "SmoothGrad", {"wraps": "saliency"}),
    "saliency": ("pathattr.methods.gradient", "Saliency", {}),
    "input-x-gradient": ("pathattr.methods.gradient", "InputXGradient", {}),
}


def available() -> list[str]:
    """Names in ``METHODS`` whose module is installed (found without importing it)."""
    return [name for name, (module, _, _) in METHODS.items()
            if importlib.util.find_spec(module) is not None]


def parse_methods(spec: str) -> list[str]:
    """``"ig,idg"`` or ``"all"`` -> method names, in the order given, without repeats.
    Raises ``UsageError`` naming an unknown method."""
    names = available()
    if spec.strip() == "all":
        return names
    chosen = list(dict.fromkeys(s.strip() for s in spec.split(",") if s.strip()))
    if not chosen:
        raise UsageError("--method: no method given")
    for name in chosen:
        if name not in names:
            raise UsageError(f"--method: unknown method {name!r}; available: "
                             f"{', '.join(names)}, or all")
    return chosen


def make(name: str, model: object) -> object:
    """A fresh instance of method ``name`` for ``model``. Cost: the first import of its module."""
    module, cls, kwargs = METHODS[name]
    kwargs = {k: v for k, v in kwargs.items() if k != "attribute"}
    inner = kwargs.pop("wraps", None)
    factory = getattr(importlib.import_module(module), cls)
    return factory(make(inner, model), **kwargs) if inner else factory(model, **kwargs)


def run(name: str, model: object, x: object, target: int, steps: int,
        n_classes: int) -> tuple[object, float]:
    """``(Attribution, seconds)`` of method ``name`` on ``x`` for class ``target``. ``steps``
    reaches methods whose ``attribute`` has a ``steps`` parameter (path methods); the others
    (DeepLIFT, gradients) have no path to discretise. Cost: the method's."""
    method = make(name, model)
    params = inspect.signature(method.attribute).parameters
    kwargs = {"target": target}
    if "steps" in params:
        kwargs["steps"] = steps
    if "classes" in params:  # AGI: its default of 10 false classes needs an 11-class model
        kwargs["classes"] = min(params["classes"].default, n_classes - 1)
    kwargs.update(METHODS[name][2].get("attribute", {}))
    start = time.perf_counter()
    result = method.attribute(x, **kwargs)
    return result, time.perf_counter() - start
