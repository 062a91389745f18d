"""Integrated Gradients (Sundararajan et al. 2017), in input space and in a layer's space.

    IG_i = (x_i - x'_i) * int_0^1 dF/dx_i (x' + a (x - x')) da  ~  (x_i - x'_i) sum_k w_k g_i(a_k)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, cast

import numpy as np
import torch
from torch import Tensor

from ..baselines import BaselineSpec
from ..call import ConvergenceDelta, Inputs, LayerNoise, layer_path, layer_tensors
from ..engine import guarded
from ..forward import OutputSpec
from ..integrate import (
    Integral,
    Integrator,
    Path,
    Points,
    given,
    integrate,
    nodes_of,
    points_of,
    straight,
    totals,
)
from ..layers import LayerSpec, resolve_layer
from ..quadrature import MAX_STEPS, refine, trapezoid_weights
from ..result import Attribution
from ..targets import TargetSpec
from ..validate import check_number, check_positive_int


class IGIntegral(Integrator):
    """IG on the shared pass: ``sum_k w_k g(a_k)`` per row (and target), times ``x - x'``.

    ``multiply_by_inputs=False`` shows the path-averaged gradient itself; ``delta`` stays the
    gap of the multiplied attributions.
    """

    OPTIONS = ("tol", "max_steps", "multiply_by_inputs")

    def __init__(self, multiply_by_inputs: bool = True):
        self.multiply_by_inputs = multiply_by_inputs
        self.sums: list[Tensor] = []

    @classmethod
    def of(cls, options: dict) -> Integrator:
        """IG for a caller's options: ``steps="auto"`` is the error-controlled rule (``tol``,
        ``max_steps``)."""
        if options.get("steps") == "auto":
            return AdaptiveIGIntegral(**given(options, *cls.OPTIONS))
        integrator = cls(**given(options, "multiply_by_inputs"))
        integrator.nodes = nodes_of(options)
        return integrator

    def add(self, step: Points) -> None:
        w = step.weights
        assert w is not None  # a fixed rule's points come with their weights
        if not self.sums:
            self.sums = [k.new_zeros((step.path.rows, *k.shape[1:])) for k in step.kept]
        for acc, k in zip(self.sums, step.kept):
            acc.index_add_(0, step.rows, k * w.to(acc.dtype).reshape(-1, *[1] * (k.dim() - 1)))

    def finish(self, path: Path) -> Integral:
        attrs = [path.attribution(acc, i) for i, acc in enumerate(self.sums)]
        out = path.out_delta()
        delta = path.mean(totals(attrs) - out)
        shown = attrs if self.multiply_by_inputs or path.reduce is not None else self.sums
        return Integral([path.mean(a) for a in shown], delta, path.alphas, path.weights,
                        {"rule": path.rule, "steps": path.steps,
                         "gradient_evaluations": path.evaluations(path.steps),
                         "output_delta": path.mean(out)})


class AdaptiveIGIntegral(Integrator):
    """IG with error-controlled refinement (``quadrature.refine``) of every row's and
    target's own path (path ``r * T + t``), in input space or along a layer path.

    A point one target asks for serves all targets of its row (one forward, ``T``
    backwards, computed once). Keeps each node's kept gradients (memory: nodes x what
    ``Path.keep`` keeps, per path). ``info["converged"]`` only where the result's own gap is
    within ``tol``: the refinement's bookkeeping is in the model's dtype, per baseline.
    """

    rides = False

    def __init__(self, tol: float = 0.01, max_steps: int = 512,
                 multiply_by_inputs: bool = True):
        self.multiply_by_inputs = multiply_by_inputs
        self.max_steps = check_positive_int(max_steps, "max_steps", minimum=16,
                                            maximum=MAX_STEPS)
        self.tol = check_number(tol, "tol", 0, low_open=True)

    def run(self, path: Path, shared=None) -> Integral:
        t_count, dev = path.n_targets, path.s.x.device
        dt = path.diffs[0].dtype
        cache: dict[tuple[int, float], tuple[Tensor, list[Tensor], Tensor]] = {}
        kept: dict[int, list[Tensor]] = {}

        def evaluate(ids, paths, t):
            ex, tok = paths // t_count, paths % t_count
            todo = sorted({(int(e), float(a)) for e, a in zip(ex, t)} - cache.keys())
            if todo:
                rows = torch.as_tensor([e for e, _ in todo], device=dev)
                alphas = torch.as_tensor([a for _, a in todo], dtype=dt, device=dev)
                for step in points_of(path, rows, alphas, None):
                    for j, key in enumerate(todo[step.chunk.span]):
                        cache[key] = (step.output[j], [k[j] for k in step.kept],
                                      step.slope[j])
            fs, ds = [], []
            for i, e, a, k in zip(ids, ex, t, tok):
                f, parts, slope = cache[(int(e), float(a))]
                kept[int(i)] = [p[k] for p in parts]
                fs.append(f[k])
                ds.append(slope[k])
            if not fs:  # no rows: an empty batch
                return np.zeros(0), np.zeros(0)
            # one transfer per round: the refinement decides on the host, element reads
            # would each wait for the device
            values = torch.stack([torch.stack(fs), torch.stack(ds)]).double().cpu().numpy()
            return values[0], values[1]

        nodes, ids, _, evals, converged = refine(evaluate, path.rows * t_count, self.tol,
                                                 self.max_steps)
        per_path, alphas, weights = trapezoid_sums(nodes, ids, kept, dt, dev)
        sums = []
        for i, d in enumerate(path.diffs):
            if not per_path:  # no rows: an empty batch
                sums.append(d.new_zeros((0, t_count, *d.shape[1:])))
                continue
            stacked = torch.stack([row[i] for row in per_path])
            sums.append(stacked.reshape(path.rows, t_count, *stacked.shape[1:]))
        attrs = [path.attribution(acc, i) for i, acc in enumerate(sums)]
        out = path.out_delta()
        gap = totals(attrs) - out
        evals_t = torch.as_tensor(evals, dtype=torch.int64).reshape(path.rows, t_count)
        ok = torch.as_tensor(converged, dtype=torch.bool).reshape(path.rows, t_count)
        delta, out_mean = path.mean(gap), path.mean(out)
        info: dict = {"rule": "adaptive trapezoid", "steps": "auto", "tol": self.tol,
                      "output_delta": out_mean}
        if path.targets:  # each target its own count; the forwards run per row
            info["gradient_evaluations"] = evals_t.reshape(path.s.k, path.s.b, t_count).sum(0)
            info["points"] = torch.bincount(torch.as_tensor([e for e, _ in cache],
                                                            dtype=torch.long),
                                            minlength=path.rows)
        else:
            info["gradient_evaluations"] = path.evaluations(evals_t[:, 0])
        within = (delta.detach().double().abs() <= self.tol * out_mean.double().abs()).cpu()
        every = ok.reshape(path.s.k, path.s.b, t_count).all(0)  # every baseline's path
        info["converged"] = (every if path.targets else every[:, 0]) & within
        shown = attrs if self.multiply_by_inputs or path.reduce is not None else sums
        return Integral([path.mean(a) for a in shown], delta, alphas, weights, info)


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
        s = self.prepare(x, baselines, target, additional_forward_args, forward_kwargs, output)
        return straight(self.model, s, IGIntegral.of(
            {"steps": steps, "rule": rule, "tol": tol, "max_steps": max_steps,
             "multiply_by_inputs": self.multiply_by_inputs}), batch_size)


def trapezoid_sums(nodes: list, ids: list, kept: dict[int, list[Tensor]], dtype, device
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
        self.layers: list[LayerSpec] = list(layer) if isinstance(layer, (list, tuple)) \
            else [cast(LayerSpec, layer)]
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
        s = self.prepare(x, baselines, target, additional_forward_args, forward_kwargs,
                         output, integers=True)
        with guarded(self.model):
            engine = s.engine(batch_size, channels_last=False)
            groups = layer_tensors(self.model, self.layers, attribute_to_layer_input, s)
            f1, f0 = layer_path(engine, [n for g in groups for n in g],
                                attribute_to_layer_input, layer_noise)
            if layer_noise is not None:
                rows = torch.arange(len(s.x), device=s.x.device)
                f1 = engine.values(rows, torch.ones(len(rows), dtype=engine.path_diff.dtype,
                                                    device=s.x.device))
            integrator = IGIntegral.of({"steps": steps, "rule": rule, "tol": tol,
                                        "max_steps": max_steps,
                                        "multiply_by_inputs": self.multiply_by_inputs})
            path = Path.of(s, engine, f0, f1, integrator.nodes)
            (integral,) = integrate(path, [integrator])
        attrs, per_layer = list(integral.attributions), []
        for g in groups:  # a layer of several tensors: a tuple of attributions
            per_layer.append(attrs[0] if len(g) == 1 else tuple(attrs[:len(g)]))
            del attrs[:len(g)]
        names = [g[0].split("[", 1)[0] if len(g) > 1 else g[0] for g in groups]
        info = {**integral.info, "layer": names if self.several else names[0]}
        return Attribution(tuple(per_layer) if self.several else per_layer[0], integral.delta,
                           integral.alphas, integral.weights, info)
