"""Integrated Gradients (Sundararajan et al. 2017), in input space and in a layer's space.

    IG_i = (x_i - x'_i) * int_0^1 dF/dx_i (x' + a (x - x')) da  ~  (x_i - x'_i) sum_k w_k g_i(a_k)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from ..baselines import BaselineSpec
from ..call import (
    ConvergenceDelta,
    Inputs,
    LayerNoise,
    Setup,
    flat_points,
    noisy,
    rule_tensors,
    setup,
)
from ..engine import Chunk, LayerPath, PathEngine, accumulation_dtype, guarded
from ..forward import OutputSpec
from ..layers import LayerSpec, resolve_layer
from ..quadrature import MAX_STEPS, refine, trapezoid_weights
from ..result import Attribution
from ..targets import TargetSpec
from ..validate import check_number, check_positive_int


class GradientSum:
    """Running ``sum_k w_k grad(a_k)`` per row over one pass; ``weights``: one per point of the
    pass, in point order. ``sums``: one ``(n_rows, *shape)`` tensor per gradient added."""

    def __init__(self, n_rows: int, weights: Tensor):
        self.n, self.weights = n_rows, weights
        self.sums: list[Tensor] = []

    def add(self, ch: Chunk, grads: Sequence[Tensor]) -> None:
        w = self.weights[ch.span]
        if not self.sums:
            self.sums = [g.new_zeros((self.n, *g.shape[1:]), dtype=accumulation_dtype(g.dtype))
                         for g in grads]
        for acc, g in zip(self.sums, grads):
            w_acc = w.to(acc.dtype).reshape(-1, *([1] * (g.dim() - 1)))
            acc.index_add_(0, ch.rows, g.to(acc.dtype) * w_acc)


def weighted_gradient_sum(engine: PathEngine, rows: Tensor, alphas: Tensor, weights: Tensor
                          ) -> list[Tensor]:
    """``sum_k w_k grad(a_k)`` per row, for the path point (input or layers) and every tap.
    Cost: one forward and one backward per point."""
    acc = GradientSum(len(engine.x), weights)
    for ch in engine.gradients(rows, alphas):
        acc.add(ch, ch.grads)
    return acc.sums


class IntegratedGradients(ConvergenceDelta):
    """Integrated Gradients on the straight path from each baseline to the input.

    ``multiply_by_inputs=False`` returns the path-averaged gradient ``sum_k w_k g(a_k)`` (Captum's
    "global" attribution) instead of multiplying it by ``x - x'``; ``delta`` stays the
    completeness gap of the multiplied attributions.
    """

    def __init__(self, model, multiply_by_inputs: bool = True):
        self.model, self.multiply_by_inputs = model, multiply_by_inputs

    def attribute(
        self,
        x: Inputs,
        baselines: BaselineSpec | tuple = None,
        target: TargetSpec = None,
        *,
        steps: int | Literal["auto"] = 50,
        rule: str = "gausslegendre",
        batch_size: int | Literal["auto"] = "auto",
        tol: float = 0.01,
        max_steps: int = 512,
        additional_forward_args: tuple | None = None,
        forward_kwargs: dict | None = None,
        output: OutputSpec = None,
    ) -> Attribution:
        """Return IG attributions (the structure of ``x``) with their completeness gap ``delta``.

        ``steps="auto"``: adaptive trapezoid refinement, driven by the exact check
        ``F(b) - F(a) = int_a^b dF`` on every sub-interval, until the completeness gap is at
        most ``tol * |F(x) - F(x')|`` per example, or ``max_steps`` gradient evaluations per
        path; ``info["converged"]`` says which (see ``quadrature.refine``).
        Cost: ``steps`` (or the adaptive count) forward+backward passes per example and
        baseline, plus two forward passes for the endpoints.
        """
        s = setup(self.model, x, baselines, target, additional_forward_args, forward_kwargs,
                  output)
        with guarded(self.model):
            engine = s.engine(batch_size)
            f1, f0 = engine.endpoints()
            if steps == "auto":
                (grad_sum,), alphas, weights, info = _adaptive(engine, s, tol, max_steps)
            else:
                alphas, weights = rule_tensors(rule, steps, s.x)
                rows, flat_a = flat_points(s.x.shape[0], alphas)
                (grad_sum,) = weighted_gradient_sum(engine, rows, flat_a, weights.repeat(len(s.x)))
                info = {"rule": rule, "steps": steps,
                        "gradient_evaluations": s.evaluations(steps)}
        return confirm_convergence(s.result(grad_sum, engine.diff, f1 - f0, alphas, weights,
                                            info, self.multiply_by_inputs))


def confirm_convergence(r: Attribution) -> Attribution:
    """``info["converged"]`` only where the result's own gap, ``|delta|``, is at most ``tol``
    of ``|F(x) - F(x')|``: the refinement's bookkeeping is per baseline and in the model's
    dtype, the result's gap is what a user reads."""
    if "converged" in r.info:
        gap, total = r.delta.detach().double().abs(), r.info["output_delta"].double().abs()
        r.info["converged"] = r.info["converged"] & (gap <= r.info["tol"] * total).cpu()
    return r


def _adaptive(engine: PathEngine, s: Setup, tol: float, max_steps: int):
    """Error-controlled refinement (``quadrature.refine``) of every row's path, in input space
    or along the engine's ``layer_path``.

    Keeps each node's gradients (memory: nodes x input or layer size per row). Returns the
    weighted gradient sums (one per input or layer), per-row nodes and weights, and the info.
    """
    check_positive_int(max_steps, "max_steps", minimum=16, maximum=MAX_STEPS)
    check_number(tol, "tol", 0, low_open=True)
    path = engine.layer_path
    diffs = [engine.diff] if path is None else [e - b for b, e in zip(path.start, path.end)]
    dev, dt = s.x.device, diffs[0].dtype
    flat_diffs = [d.flatten(1) for d in diffs]
    grads: dict[int, list[Tensor]] = {}

    def evaluate(ids, ex, t):
        rows = torch.as_tensor(ex, device=dev)
        f, d = [], []
        for ch in engine.gradients(rows, torch.as_tensor(t, dtype=dt, device=dev)):
            gs = ch.grads[:len(diffs)]
            f.append(ch.output)
            d.append(sum((g.flatten(1) * fd[ch.rows]).sum(1) for g, fd in zip(gs, flat_diffs)))
            for j, i in enumerate(ids[ch.span]):
                grads[int(i)] = [g[j].to(accumulation_dtype(g.dtype)) for g in gs]
        return torch.cat(f).double().cpu().numpy(), torch.cat(d).double().cpu().numpy()

    nodes, ids, gap, evals, converged = refine(evaluate, len(s.x), tol, max_steps)
    per_row, alphas, weights = trapezoid_sums(nodes, ids, grads, dt, dev)
    sums = [torch.stack([row[k] for row in per_row]) if per_row else torch.zeros_like(d)
            for k, d in enumerate(diffs)]  # no rows: an empty batch
    info = {
        "rule": "adaptive trapezoid",
        "steps": "auto",
        "tol": tol,
        "gradient_evaluations": s.evaluations(evals),
        "converged": torch.as_tensor(converged, dtype=torch.bool).reshape(s.k, s.b).all(0),
    }
    return sums, alphas, weights, info


def trapezoid_sums(nodes: list, ids: list, kept: dict[int, Sequence[Tensor]], dtype, device
                   ) -> tuple[list[list[Tensor]], list[Tensor], list[Tensor]]:
    """After ``quadrature.refine``: per path, the trapezoid-weighted sum over its nodes of each
    tensor ``kept[node id]`` holds, and the path's nodes and weights as tensors."""
    sums, alphas, weights = [], [], []
    for t, i in zip(nodes, ids):
        w = trapezoid_weights(t)
        alphas.append(torch.as_tensor(t, dtype=dtype, device=device))
        weights.append(torch.as_tensor(w, dtype=dtype, device=device))
        sums.append([sum(float(wj) * kept[int(j)][k] for wj, j in zip(w, i))
                     for k in range(len(kept[int(i[0])]))])
    return sums, alphas, weights


class LayerIntegratedGradients(ConvergenceDelta):
    """IG on the straight path in a layer's activation space, from its value at the baseline
    to its value at the input (the way to attribute to token embeddings).

    ``layer`` may be a list: the layers' activations then move along their straight paths
    together (they should not feed one another), ``attributions`` is a tuple with one tensor
    per layer, and completeness holds for their sum. ``multiply_by_inputs=False`` returns the
    path-averaged layer gradient instead of multiplying by ``y(x) - y(x')``.
    """

    def __init__(self, model, layer: LayerSpec | Sequence[LayerSpec],
                 multiply_by_inputs: bool = True):
        self.several = isinstance(layer, (list, tuple))
        self.layers = list(layer) if self.several else [layer]
        if not self.layers:
            raise ValueError("layer must be a layer or a non-empty list of layers")
        names = [resolve_layer(model, spec)[0] for spec in self.layers]
        if len(set(names)) != len(names):
            raise ValueError(f"layer lists a layer twice: {names}")
        self.model, self.multiply_by_inputs = model, multiply_by_inputs

    def attribute(
        self,
        x: Inputs,
        baselines: BaselineSpec | tuple = None,
        target: TargetSpec = None,
        *,
        steps: int | Literal["auto"] = 50,
        rule: str = "gausslegendre",
        batch_size: int | Literal["auto"] = "auto",
        attribute_to_layer_input: bool = False,
        tol: float = 0.01,
        max_steps: int = 512,
        layer_noise: LayerNoise | None = None,
        additional_forward_args: tuple | None = None,
        forward_kwargs: dict | None = None,
        output: OutputSpec = None,
    ) -> Attribution:
        """Return attributions of the layer's output (or input) per example, shape of that
        activation, with ``delta = sum - (F(x) - F(x'))``. ``x`` may be integer (token ids);
        ``baselines`` then are token ids too (e.g. a pad id). ``steps="auto"`` refines as
        ``IntegratedGradients`` does, with the exact local checks in the layer's space.
        ``layer_noise`` moves each layer's activation at the input end (what ``SmoothGrad``
        passes for token ids); ``F`` at the end is then measured there, one forward per row.
        Cost: two full forwards (which give the layers at both ends) and ``steps`` (or the
        adaptive count) forward+backward passes per example and baseline.
        """
        named = [resolve_layer(self.model, spec) for spec in self.layers]
        s = setup(self.model, x, baselines, target, additional_forward_args, forward_kwargs,
                  output, integers=True)
        with guarded(self.model):
            engine = s.engine(batch_size, channels_last=False)
            f1, f0, ends = engine.ends([n for n, _ in named], attribute_to_layer_input)
            for (name, _), (start, _) in zip(named, ends):
                if not start.is_floating_point():
                    what = "input" if attribute_to_layer_input else "output"
                    raise TypeError(f"layer {name!r} {what} is {start.dtype}; choose a layer "
                                    f"with a floating-point {what}")
            if layer_noise is not None:
                ends = [(a, noisy(b, layer_noise)) for a, b in ends]
            engine.use_layer_path(LayerPath([n for n, _ in named], [a for a, _ in ends],
                                             [b for _, b in ends], attribute_to_layer_input),
                                  f1, f0)
            if layer_noise is not None:
                rows = torch.arange(len(s.x), device=s.x.device)
                f1 = engine.values(rows, torch.ones(len(rows), dtype=ends[0][0].dtype,
                                                    device=s.x.device))
            if steps == "auto":
                sums, alphas, weights, info = _adaptive(engine, s, tol, max_steps)
            else:
                alphas, weights = rule_tensors(rule, steps, ends[0][0])
                rows, flat_a = flat_points(len(s.x), alphas)
                sums = weighted_gradient_sum(engine, rows, flat_a, weights.repeat(len(s.x)))
                info = {"rule": rule, "steps": steps, "gradient_evaluations": s.evaluations(steps)}
        acc = accumulation_dtype(f1.dtype)
        out_delta = s.mean(f1.to(acc) - f0.to(acc))
        attrs = [s.mean(g * (e - b)) for g, (b, e) in zip(sums, ends)]
        delta = sum(a.flatten(1).sum(1) for a in attrs) - out_delta
        if not self.multiply_by_inputs:
            attrs = [s.mean(g) for g in sums]
        info = {**info, "output_delta": out_delta,
                "layer": [n for n, _ in named] if self.several else named[0][0]}
        return confirm_convergence(Attribution(tuple(attrs) if self.several else attrs[0], delta,
                                               alphas, weights, info))
