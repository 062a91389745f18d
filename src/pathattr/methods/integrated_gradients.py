"""Integrated Gradients (Sundararajan et al. 2017), in input space and in a layer's space.

    IG_i = (x_i - x'_i) * int_0^1 dF/dx_i (x' + a (x - x')) da  ~  (x_i - x'_i) sum_k w_k g_i(a_k)
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from ..baselines import BaselineSpec
from ..engine import LayerPath, PathEngine, guarded
from ..layers import LayerSpec, resolve_layer
from ..quadrature import nodes_weights, refine, trapezoid_weights
from ..result import Attribution
from ..targets import TargetSpec, resolve_target
from ..validate import check_eval_mode, check_positive_int
from ._setup import Setup, flat_points, setup


def weighted_gradient_sum(engine: PathEngine, rows: Tensor, alphas: Tensor, weights: Tensor,
                          **kw) -> list[Tensor]:
    """``sum_k w_k grad(a_k)`` per row, for the input and every tap. Cost: one forward and
    one backward per point."""
    acc: list[Tensor] | None = None
    n = int(rows.max()) + 1
    for ch in engine.gradients(rows, alphas, **kw):
        w = weights[ch.span]
        if acc is None:
            acc = [g.new_zeros((n, *g.shape[1:])) for g in ch.grads]
        for a, g in zip(acc, ch.grads):
            a.index_add_(0, ch.rows, g * w.reshape(-1, *([1] * (g.dim() - 1))))
    return acc


class IntegratedGradients:
    """Integrated Gradients on the straight path from each baseline to the input."""

    def __init__(self, model):
        self.model = model

    def attribute(
        self,
        x: Tensor,
        baselines: BaselineSpec = None,
        target: TargetSpec = None,
        steps: int | Literal["auto"] = 50,
        rule: str = "gausslegendre",
        batch_size: int | Literal["auto"] = "auto",
        tol: float = 0.01,
        max_steps: int = 512,
    ) -> Attribution:
        """Return IG attributions (shape of ``x``) with their completeness gap ``delta``.

        ``steps="auto"``: adaptive trapezoid refinement, driven by the exact check
        ``F(b) - F(a) = int_a^b dF`` on every sub-interval, until the completeness gap is at
        most ``tol * |F(x) - F(x')|`` per example, or ``max_steps`` gradient evaluations per
        path; ``info["converged"]`` says which (see ``quadrature.refine``).
        Cost: ``steps`` (or the adaptive count) forward+backward passes per example and
        baseline, plus two forward passes for the endpoints.
        """
        s = setup(self.model, x, baselines, target)
        with guarded(self.model):
            engine = s.engine(self.model, batch_size)
            f1, f0 = engine.endpoints()
            if steps == "auto":
                grad_sum, alphas, weights, info = _adaptive(engine, s, tol, max_steps)
            else:
                a, w = nodes_weights(rule, steps)
                alphas, weights = (torch.as_tensor(v, dtype=s.x.dtype, device=s.x.device)
                                   for v in (a, w))
                rows, flat_a = flat_points(s.x.shape[0], alphas)
                (grad_sum,) = weighted_gradient_sum(engine, rows, flat_a, weights.repeat(len(s.x)))
                info = {"rule": rule, "steps": steps,
                        "gradient_evaluations": steps * s.k}
        attr = s.mean(grad_sum * engine.diff)
        out_delta = s.mean(f1 - f0)
        delta = attr.flatten(1).sum(1) - out_delta
        return Attribution(attr, delta, alphas, weights, {**info, "output_delta": out_delta})


def _adaptive(engine: PathEngine, s: Setup, tol: float, max_steps: int):
    """Error-controlled refinement (``quadrature.refine``) of every row's path.

    Keeps each node's gradient (memory: nodes x input size per row). Returns the weighted
    gradient sums, per-row nodes and weights, and the info dict.
    """
    check_positive_int(max_steps, "max_steps", minimum=16)
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol!r}")
    dev, dt = s.x.device, s.x.dtype
    grads: dict[int, Tensor] = {}
    flat_diff = engine.diff.flatten(1)

    def evaluate(ids, ex, t):
        rows = torch.as_tensor(ex, device=dev)
        f, d = [], []
        for ch in engine.gradients(rows, torch.as_tensor(t, dtype=dt, device=dev)):
            g = ch.grads[0]
            f.append(ch.output)
            d.append((g.flatten(1) * flat_diff[ch.rows]).sum(1))
            for i, gi in zip(ids[ch.span], g):
                grads[int(i)] = gi
        return torch.cat(f).double().cpu().numpy(), torch.cat(d).double().cpu().numpy()

    nodes, ids, gap, evals, converged = refine(evaluate, len(s.x), tol, max_steps)
    alphas, weights, sums = [], [], []
    for t, i in zip(nodes, ids):
        w = trapezoid_weights(t)
        alphas.append(torch.as_tensor(t, dtype=dt, device=dev))
        weights.append(torch.as_tensor(w, dtype=dt, device=dev))
        sums.append(sum(float(wj) * grads[int(j)] for wj, j in zip(w, i)))
    info = {
        "rule": "adaptive trapezoid",
        "steps": "auto",
        "tol": tol,
        "gradient_evaluations": s.mean(torch.as_tensor(evals, dtype=dt)) * s.k,
        "converged": torch.as_tensor(converged).reshape(s.k, s.b).all(0),
    }
    return torch.stack(sums), alphas, weights, info


class LayerIntegratedGradients:
    """IG on the straight path in a layer's activation space, from its value at the baseline
    to its value at the input (the way to attribute to token embeddings)."""

    def __init__(self, model, layer: LayerSpec):
        self.model, self.layer = model, layer

    def attribute(
        self,
        x: Tensor,
        baselines: Tensor | float | None = None,
        target: TargetSpec = None,
        steps: int = 50,
        rule: str = "gausslegendre",
        batch_size: int | Literal["auto"] = "auto",
        attribute_to_layer_input: bool = False,
    ) -> Attribution:
        """Return attributions of the layer's output (or input) per example, shape of that
        activation, with ``delta = sum - (F(x) - F(x'))``. ``x`` may be integer (token ids);
        ``baselines`` then are token ids too (e.g. padding). Cost: two forward passes stopped at
        the layer, two full forwards, and ``steps`` forward+backward passes per example.
        """
        resolve_layer(self.model, self.layer)
        check_eval_mode(self.model)
        if not isinstance(x, Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.is_floating_point() and not torch.isfinite(x).all():
            raise ValueError("x contains NaN or inf values")
        if baselines is None:
            base = torch.zeros_like(x)
        elif isinstance(baselines, Tensor):
            if baselines.shape not in (x.shape, x.shape[1:]):
                raise ValueError(f"baselines has shape {tuple(baselines.shape)}, expected "
                                 f"{tuple(x.shape)} or {tuple(x.shape[1:])}")
            base = baselines.to(x.device, x.dtype).expand_as(x)
        else:
            base = torch.full_like(x, baselines)
        tgt = resolve_target(target, x.shape[0], x.device)
        a, w = nodes_weights(rule, steps)
        with guarded(self.model):
            both = torch.cat([x, base])
            ends = PathEngine(self.model, both, both, tgt.repeat(2) if isinstance(tgt, Tensor)
                              else tgt, batch_size, channels_last=False)
            rows2 = torch.arange(2 * len(x), device=x.device)
            ones = torch.ones(2 * len(x), device=x.device)
            (acts,) = ends.activations([self.layer], rows2, ones, attribute_to_layer_input)
            end, start = acts[: len(x)], acts[len(x):]
            if not end.is_floating_point():
                what = "input" if attribute_to_layer_input else "output"
                raise TypeError(f"layer {self.layer!r} {what} is {end.dtype}; choose a layer "
                                f"with a floating-point {what}")
            alphas = torch.as_tensor(a, dtype=end.dtype, device=x.device)
            weights = torch.as_tensor(w, dtype=end.dtype, device=x.device)
            engine = PathEngine(self.model, x, x, tgt, batch_size, channels_last=False)
            fv = ends.values(rows2, ones)
            rows, flat_a = flat_points(len(x), alphas)
            path = LayerPath(self.layer, x, start, end, attribute_to_layer_input)
            (grad_sum,) = weighted_gradient_sum(engine, rows, flat_a, weights.repeat(len(x)),
                                                layer_path=path)
        attr = grad_sum * (end - start)
        out_delta = fv[: len(x)] - fv[len(x):]
        delta = attr.flatten(1).sum(1) - out_delta
        return Attribution(attr, delta, alphas, weights,
                           {"rule": rule, "steps": steps, "output_delta": out_delta,
                            "layer": resolve_layer(self.model, self.layer)[0]})
