"""Several path methods from one pass: ``explain(model, x, methods=[...])``.

IG, left-IG, uniform IDG and the total conductance of any number of layers are all arithmetic on
the same per-point gradients and outputs along the straight path, so one gradient pass (one
forward and one backward per point, with the layers tapped) serves them all. Adaptive IDG uses
that pass's outputs as its coarse pass and adds only its own gradient samples.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Literal

from torch import Tensor, nn

from . import registry
from .baselines import BaselineSpec
from .call import Inputs, LayerNoise, embedding_path, setup
from .engine import Chunk, guarded
from .forward import OutputSpec
from .integrate import Path, integrate
from .layers import LayerSpec, Tap, resolve_layer
from .methods.conductance import edge_plan, total_conductance
from .methods.left_ig import check_saturation
from .quadrature import nodes_weights
from .registry import canonical, shared_names
from .result import Attribution
from .targets import TargetSpec
from .validate import check_positive_int

#: What the shared pass computes, from the registry; "conductance" comes with a layer.
NAMES = shared_names()


def _parse(methods: Sequence) -> list[tuple[Hashable, str, LayerSpec | None]]:
    _PLAIN = tuple(n for n in shared_names() if n != "conductance")
    if isinstance(methods, (str, tuple)) or not isinstance(methods, Sequence) or not methods:
        raise TypeError(f"methods must be a non-empty list such as ['ig', 'idg', "
                        f"('conductance', 'layer.name')], got {methods!r}")
    parsed: list[tuple[Hashable, str, LayerSpec | None]] = []
    for m in methods:
        if isinstance(m, tuple) and len(m) == 2 and m[0] == "conductance" \
                and isinstance(m[1], (str, nn.Module)):
            parsed.append((m, "conductance", m[1]))
        elif isinstance(m, str) and (name := canonical(m, _PLAIN)) in _PLAIN:
            parsed.append((m, str(name), None))
        else:
            raise ValueError(f"unknown method {m!r}; expected one of {', '.join(_PLAIN)} "
                             f"or ('conductance', layer)")
    return parsed


def explain(
    model,
    x: Inputs,
    methods: Sequence,
    baselines: BaselineSpec | tuple = None,
    target: TargetSpec = None,
    *,
    steps: int = 50,
    rule: str = "gausslegendre",
    saturation: float = 0.9,
    idg_steps: int | None = None,
    batch_size: int | Literal["auto"] = "auto",
    path_layer: LayerSpec | None = None,
    layer_noise: LayerNoise | None = None,
    additional_forward_args: tuple | None = None,
    forward_kwargs: dict | None = None,
    output: OutputSpec = None,
) -> dict[Hashable, Attribution]:
    """Return ``{method: Attribution}`` in the order of ``methods``, keyed by the entries given.

    Each entry equals calling its method alone with the same ``steps`` and ``rule``:

    - ``"ig"``: ``IntegratedGradients.attribute(steps=steps, rule=rule)``
    - ``"left-ig"``: ``LeftIntegratedGradients.attribute(steps=steps, rule=rule, saturation=...)``
    - ``"idg-uniform"``: ``IntegratedDecisionGradients.attribute(sampling="uniform", ...)``
    - ``"idg"``: adaptive IDG with ``idg_steps`` samples (default ``steps``) whose coarse points
      are this pass's nodes and both ends (``coarse_steps=steps, rule=rule``)
    - ``"idgi"``: ``IDGI.attribute(steps=steps)`` (with ``rule="riemann_left"``, its nodes)
    - ``("conductance", layer)``: ``LayerConductance(model, layer).attribute(steps, rule)``

    Cost: ``steps`` forward+backward passes per example and baseline for all of them together
    (no graph below the layers if only conductance is asked), two forward passes for the
    endpoints, the forward passes conductance needs at cell edges that are not nodes (stopped
    after the last tapped layer), one forward per row for left-IG, and ``idg_steps``
    forward+backward passes for adaptive IDG (whose coarse pass, asked with no other method,
    is ``steps`` forwards instead of the shared gradient pass).

    Every plain entry is the registry's integrator (``registry.integrator``) on one
    ``integrate.Path``: a method with an integrator entry is computed here with no change to
    this function.
    """
    specs = _parse(methods)
    saturation = check_saturation(saturation)
    idg_steps = steps if idg_steps is None else check_positive_int(idg_steps, "idg_steps")
    names = {name for _, name, _ in specs}
    layers = list(dict.fromkeys(resolve_layer(model, layer) for _, _, layer in specs
                                if layer is not None))
    if "idgi" in names and rule != "riemann_left":
        raise ValueError(f"'idgi' shares the pass on the nodes k / steps: give "
                         f"rule='riemann_left', got rule={rule!r}")
    s = setup(model, x, baselines, target, additional_forward_args, forward_kwargs, output,
              integers=True)
    a, w = nodes_weights(rule, steps)
    options = {"steps": steps, "rule": rule, "saturation": saturation, "samples": idg_steps,
               "coarse_steps": steps}
    plain = [name for name in dict.fromkeys(n for _, n, _ in specs) if name != "conductance"]
    with guarded(model):
        engine = s.engine(batch_size)
        embedding_path(engine, path_layer, layer_noise)
        on_layer = engine.layer_path is not None
        f1, f0, ends = engine.ends([n for n, _ in layers])
        path = Path.of(s, engine, f0, f1, rule, steps)
        plan = edge_plan(a, w)
        grads: list[list[Tensor]] = [[] for _ in layers]
        acts: list[list[Tensor]] = [[] for _ in layers]

        def collect(ch: Chunk) -> None:
            n_space = len(path.diffs) if plain else 0
            for lst, t in zip(grads, ch.grads[n_space:], strict=True):
                lst.append(t)
            for lst, t in zip(acts, ch.acts):
                lst.append(t)

        integrals = integrate(path, [registry.integrator(n, options) for n in plain],
                              [Tap(n) for n, _ in layers], collect, input_grad=bool(plain),
                              want_acts=bool(layers) and plan.uses_node_acts)
        results: dict[Hashable, Attribution] = {
            name: integral.result(path, structure=not on_layer)
            for name, integral in zip(plain, integrals)}
        edge_acts = plan.edge_activations(engine, [n for n, _ in layers]) if layers else []
    out_delta = s.mean(f1 - f0)
    for i, (name, _) in enumerate(layers):
        results[("conductance", name)] = total_conductance(
            s, grads[i], acts[i], edge_acts[i], ends[i], plan, steps, out_delta, rule, name,
            path.alphas, path.weights)
    return {key: results[("conductance", resolve_layer(model, layer)[0])
                         if layer is not None else name] for key, name, layer in specs}
