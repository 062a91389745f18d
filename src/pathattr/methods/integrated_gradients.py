"""Integrated Gradients (Sundararajan et al. 2017), in input space and in a layer's space.

    IG_i = (x_i - x'_i) * int_0^1 dF/dx_i (x' + a (x - x')) da  ~  (x_i - x'_i) sum_k w_k g_i(a_k)
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor

from ..baselines import BaselineSpec
from ..engine import LayerPath, PathEngine, guarded
from ..layers import LayerSpec, resolve_layer
from ..quadrature import gauss_on, nodes_weights, refine
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

        ``steps="auto"``: adaptive Gauss-Legendre refinement until the completeness gap is at
        most ``tol * |F(x) - F(x')|`` per example (guaranteed by the local checks), or
        ``max_steps`` gradient evaluations per path; ``info["converged"]`` says which.
        Cost: ``steps`` (or the adaptive count) forward+backward passes per example and
        baseline, plus two forward passes for the endpoints.
        """
        s = setup(self.model, x, baselines, target)
        with guarded(self.model):
            engine = s.engine(self.model, batch_size)
            f1, f0 = engine.endpoints()
            if steps == "auto":
                grad_sum, alphas, weights, info = _adaptive(engine, s, f0, f1, tol, max_steps)
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


def _adaptive(engine: PathEngine, s: Setup, f0: Tensor, f1: Tensor, tol: float, max_steps: int,
              order: int = 2):
    """Error-controlled refinement (see ``quadrature.refine``) of every row's path."""
    check_positive_int(max_steps, "max_steps", minimum=8 * order)
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol!r}")
    dev, dt = s.x.device, s.x.dtype
    parts: dict[int, Tensor] = {}
    nodes: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    flat_diff = engine.diff.flatten(1)

    def integrate(ids, ex, a, b):
        an, wn = gauss_on(a, b, order)
        rows = torch.as_tensor(np.repeat(ex, order), device=dev)
        alphas = torch.as_tensor(an.ravel(), dtype=dt, device=dev)
        w = torch.as_tensor(wn.ravel(), dtype=dt, device=dev)
        est = np.empty(len(ids))
        grads = torch.cat([ch.grads[0] for ch in engine.gradients(rows, alphas)])
        wg = (grads * w.reshape(-1, *([1] * (grads.dim() - 1)))).reshape(len(ids), order,
                                                                        *grads.shape[1:]).sum(1)
        est[:] = (wg.flatten(1) * flat_diff[torch.as_tensor(ex, device=dev)]).sum(1).double().cpu()
        for j, i in enumerate(ids):
            parts[int(i)] = wg[j]
            nodes[int(i)] = (an[j], wn[j])
        return est

    def values(ex, t):
        rows = torch.as_tensor(ex, device=dev)
        return engine.values(rows, torch.as_tensor(t, dtype=dt, device=dev)).double().cpu().numpy()

    final, err, evals, converged = refine(
        integrate, values, f0.double().cpu().numpy(), f1.double().cpu().numpy(), tol, max_steps,
        order=order)
    grad_sum = torch.stack([sum(parts[i] for _, _, i in path) for path in final])
    alphas, weights = [], []
    for path in final:
        a = np.concatenate([nodes[i][0] for _, _, i in path])
        w = np.concatenate([nodes[i][1] for _, _, i in path])
        alphas.append(torch.as_tensor(a, dtype=dt, device=dev))
        weights.append(torch.as_tensor(w, dtype=dt, device=dev))
    info = {
        "rule": f"adaptive gausslegendre-{order}",
        "steps": "auto",
        "tol": tol,
        "gradient_evaluations": s.mean(torch.as_tensor(evals, dtype=dt)) * s.k,
        "local_error": s.mean(torch.as_tensor(err, dtype=dt)),
        "converged": torch.as_tensor(converged).reshape(s.k, s.b).all(0),
    }
    return grad_sum, alphas, weights, info


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
            both = PathEngine(self.model, torch.cat([x, base]), torch.cat([x, base]), None,
                              batch_size, channels_last=False)
            rows2 = torch.arange(2 * len(x), device=x.device)
            ones = torch.ones(2 * len(x), device=x.device)
            acts = both.activations(self.layer, rows2, ones, attribute_to_layer_input)
            end, start = acts[: len(x)], acts[len(x):]
            if not end.is_floating_point():
                raise TypeError(f"layer {self.layer!r} activation is {end.dtype}; choose a layer "
                                f"with a floating-point {'input' if attribute_to_layer_input else 'output'}")
            alphas = torch.as_tensor(a, dtype=end.dtype, device=x.device)
            weights = torch.as_tensor(w, dtype=end.dtype, device=x.device)
            engine = PathEngine(self.model, x, x, tgt, batch_size, channels_last=False)
            f = PathEngine(self.model, torch.cat([x, base]), torch.cat([x, base]), tgt.repeat(2)
                           if isinstance(tgt, Tensor) else tgt, batch_size, False)
            fv = f.values(rows2, ones)
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
