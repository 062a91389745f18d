"""Several path methods from one pass: ``explain(model, x, methods=[...])``.

IG, left-IG, IDGI, uniform IDG and the total conductance of any number of layers are all
arithmetic on the per-point gradients and outputs along the straight path, so one gradient pass
per set of nodes (one forward and one backward per point, with the layers tapped) serves all
the methods on those nodes (``integrate.integrate``). Adaptive IDG uses that pass's outputs as
its coarse pass and adds only its own gradient samples. This driver names no method: what it
computes is every registry entry with an integrator.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Literal

from torch import nn

from . import registry
from .baselines import BaselineSpec
from .call import Inputs, LayerNoise, embedding_path, setup
from .engine import guarded
from .forward import OutputSpec
from .integrate import DEFAULT_RULE, Integrator, Path, integrate, nodes_of, tapped_ends
from .layers import LayerSpec
from .result import Attribution
from .targets import TargetSpec

#: The methods ``explain`` computes: every registry entry with an integrator.
NAMES = registry.integrated()

Entry = str | tuple


def _parse(methods: Sequence) -> list[tuple[Hashable, str, dict]]:
    """``(key, name, options)`` per entry: ``"name"`` or ``"name:option=value..."``,
    ``(name, {option: value})``, or ``(name, layer)`` for a layer method."""
    if isinstance(methods, (str, tuple)) or not isinstance(methods, Sequence) or not methods:
        raise TypeError(f"methods must be a non-empty list such as ['ig', ('left-ig', "
                        f"{{'saturation': 0.8}}), ('conductance', 'layer.name')], got "
                        f"{methods!r}")
    names = registry.integrated()
    parsed: list[tuple[Hashable, str, dict]] = []
    for m in methods:
        if isinstance(m, str):
            name, options = registry.parse_entry(m)
        elif isinstance(m, tuple) and len(m) == 2 and isinstance(m[0], str):
            name, options = m[0], m[1]
            layer_method = name in registry.METHODS and registry.METHODS[name].space == "layer"
            if isinstance(options, (str, nn.Module)) and layer_method:
                options = {"layer": options}
            elif isinstance(options, dict):  # a dict is no key: the command line's spelling
                m = ":".join([name, *(f"{k}={v!r}" for k, v in options.items())])
        else:
            name, options = None, None
        name = registry.canonical(name, names)
        if name not in names or not isinstance(options, dict):
            raise ValueError(f"unknown method {m!r}; expected one of {', '.join(names)} "
                             f"(a name, 'name:option=value', (name, {{option: value}}), or "
                             f"(layer method, layer))")
        parsed.append((m, str(name), options))
    return parsed


def explain(
    model,
    x: Inputs,
    methods: Sequence[Entry],
    baselines: BaselineSpec | tuple = None,
    target: TargetSpec = None,
    *,
    steps: int | Literal["auto"] = "auto",
    rule: str = DEFAULT_RULE,
    batch_size: int | Literal["auto"] = "auto",
    path_layer: LayerSpec | None = None,
    layer_noise: LayerNoise | None = None,
    additional_forward_args: tuple | None = None,
    forward_kwargs: dict | None = None,
    output: OutputSpec = None,
) -> dict[Hashable, Attribution]:
    """Return ``{entry: Attribution}`` in the order of ``methods``, keyed by the entries
    given (``(name, {option: value})`` by its ``"name:option=value"`` spelling).

    An entry is a method name of ``pathattr.registry`` with an integrator (``NAMES``), with
    its own options as ``(name, {option: value})`` or ``"name:option=value:..."`` (the
    command line's spelling), or ``(name, layer)`` for a layer method (``("conductance",
    "block.3")``). ``steps`` and ``rule`` are every entry's unless it gives its own; each
    entry equals its method's class called alone with them. ``steps="auto"``: the
    error-controlled rule for a method with one (IG), ``integrate.DEFAULT_STEPS`` nodes for
    the others.

    Cost: one forward and backward per node and example and baseline for all the entries
    on the same nodes together (no graph below the layers if only layer methods ride it),
    two forwards for the endpoints (which also give the tapped layers there), and what each
    method adds (its own pass for one that places its own points, e.g. adaptive IG or IDG's
    samples, whose coarse pass reads the shared pass's outputs when it ran on its grid).
    """
    specs = _parse(methods)
    defaults = {"steps": steps, "rule": rule}
    integrators: list[Integrator] = [registry.integrator(name, defaults, options)
                                     for _, name, options in specs]
    s = setup(model, x, baselines, target, additional_forward_args, forward_kwargs, output,
              integers=True)
    with guarded(model):
        engine = s.engine(batch_size)
        embedding_path(engine, path_layer, layer_noise)
        f1, f0, ends = tapped_ends(engine, integrators, model)
        path = Path.of(s, engine, f0, f1, nodes_of(defaults), layer_ends=ends)
        integrals = integrate(path, integrators)
        structure = engine.layer_path is None
        return {key: integral.result(path, structure)
                for (key, _, _), integral in zip(specs, integrals)}
