"""Left Integrated Gradients (Miglani et al. 2020): IG over the unsaturated part of the path.

    leftIG_i = (x_i - x'_i) * int_0^a* dF/dx_i (x(a)) da,
    a* = the first a at which F(x(a)) - F(x') reaches r (F(x) - F(x'))

Past ``a*`` the output has (nearly) stopped changing -- saturation -- yet IG keeps adding its
gradients. ``a*`` is found on the piecewise-linear interpolant of ``F`` through the rule's nodes
(``F`` comes with every gradient, free) and both ends. The integral keeps the rule's nodes and
truncates their cells at ``a*``: node ``k``, owning the cell ``[t_{k-1}, t_k]`` of weight ``w_k``
(``quadrature.cell_edges``), weighs ``clip(a* - t_{k-1}, 0, w_k)``. So ``r = 1`` is IG with the
same rule exactly (``a* = 1`` by definition, even where ``F`` overshoots ``F(x)`` on the way), and
one gradient pass serves IG and left-IG together.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from ..baselines import BaselineSpec
from ..call import Inputs, Setup, flat_points, rule_tensors, setup
from ..engine import Chunk, PathEngine, guarded
from ..forward import OutputSpec
from ..quadrature import cell_edges
from ..result import Attribution
from ..targets import TargetSpec
from ..validate import check_number


def check_saturation(saturation: object) -> float:
    return check_number(saturation, "saturation", 0, 1, low_open=True)


def saturation_alphas(alphas: np.ndarray, f: np.ndarray, f0: np.ndarray, f1: np.ndarray,
                      saturation: float) -> np.ndarray:
    """``a*`` per row from ``F`` at all the sorted nodes at once: ``f`` ``(R, m)`` at ``alphas``
    ``(m,)``, ``f0``, ``f1`` ``(R,)`` at the ends; the first crossing of the level on the
    piecewise-linear interpolant through ``(0, f0)``, the nodes and ``(1, f1)`` (which always
    reaches it). ``inf`` for ``saturation = 1`` (every weight whole), ``0`` where ``f1 = f0``."""
    if saturation == 1:
        return np.full(len(f0), math.inf)
    a = np.concatenate([[0.0], alphas, [1.0]])
    v = np.concatenate([f0[:, None], f, f1[:, None]], 1)
    level = f0 + saturation * (f1 - f0)
    sign = np.where(f1 >= f0, 1.0, -1.0)
    j = np.argmax(sign[:, None] * (v[:, 1:] - level[:, None]) >= 0, axis=1) + 1
    rows = np.arange(len(f0))
    lo, hi = v[rows, j - 1], v[rows, j]
    with np.errstate(invalid="ignore", divide="ignore"):
        cut = a[j - 1] + (level - lo) / (hi - lo) * (a[j] - a[j - 1])
    return np.where(f1 == f0, 0.0, cut)


def truncated_weights(cut: Tensor, weights: Tensor) -> Tensor:
    """``c_k = clip(a* - t_{k-1}, 0, w_k)`` for every row's ``a*`` (``cut`` ``(R,)``) and the
    rule's ``weights`` ``(m,)``: its cells cut at ``a*``. Returns ``(R, m)``."""
    lo = torch.as_tensor(cell_edges(weights.double().cpu().numpy())[:-1], dtype=weights.dtype,
                         device=weights.device)
    return (cut[:, None].to(weights.dtype) - lo).clamp(min=0).minimum(weights)


class SaturationSum:
    """Running ``sum_k c_k g_k`` per row over one pass of a fixed rule in point order, with
    ``c_k = clip(a* - t_{k-1}, 0, w_k)``.

    ``a*`` of a row is known once a node reaches the level; until then every node but the row's
    latest has its full weight (its cell ends before the latest node, hence before ``a*``), so
    only the latest gradient per row waits.
    """

    def __init__(self, diff: Tensor, f0: Tensor, f1: Tensor, saturation: float, alphas: Tensor,
                 weights: Tensor):
        self.m = len(alphas)
        self.alphas = alphas.double().cpu().numpy()
        self.lo = torch.as_tensor(cell_edges(weights.double().cpu().numpy())[:-1],
                                  dtype=weights.dtype, device=weights.device)
        self.w = weights
        lo, hi = f0.double().cpu().numpy(), f1.double().cpu().numpy()
        self.f1 = hi
        self.level = lo + saturation * (hi - lo)
        self.sign = np.where(hi >= lo, 1.0, -1.0)
        # saturation 1 is the whole path: a* = +inf makes every c_k = w_k exactly
        self.cut = np.full(len(lo), math.inf if saturation == 1 else math.nan)
        # F(x) = F(x'): the level F(x') is reached at a = 0 (attributions 0, by definition)
        self.cut[(hi == lo) & (saturation < 1)] = 0.0
        self.prev_a, self.prev_f = np.zeros(len(lo)), lo.copy()
        self.grad = torch.zeros_like(diff)
        self.pending = torch.zeros_like(diff)
        self.pending_k = np.full(len(lo), -1)

    def add(self, ch: Chunk, grad: Tensor) -> None:
        k_all = np.arange(ch.span.start, ch.span.stop) % self.m
        f_all = ch.output.double().cpu().numpy()
        rows, counts = torch.unique_consecutive(ch.rows.cpu(), return_counts=True)
        start = 0
        for r, n in zip(rows.tolist(), counts.tolist(), strict=True):
            seg = slice(start, start + n)
            start += n
            if math.isnan(self.cut[r]):
                self._find_cut(r, self.alphas[k_all[seg]], f_all[seg])
            self._take(r, k_all[seg], grad[seg])

    def _find_cut(self, r: int, a: np.ndarray, f: np.ndarray) -> None:
        a = np.concatenate([[self.prev_a[r]], a])
        f = np.concatenate([[self.prev_f[r]], f])
        reached = np.flatnonzero(self.sign[r] * (f[1:] - self.level[r]) >= 0)
        if len(reached):
            j = reached[0]
            self.cut[r] = a[j] + (self.level[r] - f[j]) / (f[j + 1] - f[j]) * (a[j + 1] - a[j])
        else:
            self.prev_a[r], self.prev_f[r] = a[-1], f[-1]

    def _take(self, r: int, k: np.ndarray, g: Tensor) -> None:
        """Add the terms of row ``r`` whose weights are known; keep its latest one pending."""
        if self.pending_k[r] >= 0:
            k = np.concatenate([[self.pending_k[r]], k])
            g = torch.cat([self.pending[r:r + 1], g])
        if len(k) == 0:
            return
        kt = torch.as_tensor(k, device=self.w.device)
        known = not math.isnan(self.cut[r])
        c = (self.cut[r] - self.lo[kt]).clamp(min=0).minimum(self.w[kt]) if known else self.w[kt]
        n = len(k) if known else len(k) - 1
        self.grad[r] += (g[:n] * c[:n].reshape(-1, *([1] * (g.dim() - 1)))).sum(0)
        self.pending_k[r] = -1 if known else k[-1]
        if not known:
            self.pending[r] = g[-1]

    def finish(self) -> np.ndarray:
        """Rows whose nodes never reached the level cross it after the last node (``F`` reaches
        ``F(x)`` at ``a = 1``). Returns ``a*`` per row (``1`` for ``saturation = 1``)."""
        for r in np.flatnonzero(np.isnan(self.cut)):
            a, f = self.prev_a[r], self.prev_f[r]
            self.cut[r] = a + (self.level[r] - f) / (self.f1[r] - f) * (1 - a)
            self._take(r, np.zeros(0, dtype=int), self.grad[:0])
        return np.minimum(self.cut, 1.0)

    def result(self, engine: PathEngine, s: Setup, f0: Tensor, f1: Tensor, saturation: float,
               alphas: Tensor, weights: Tensor, info: dict) -> Attribution:
        """Left-IG with ``delta = sum - (F(x(a*)) - F(x'))``, the completeness gap of the
        truncated path. Cost: one forward pass per row (``F`` at ``a*``)."""
        cut = torch.as_tensor(self.finish(), dtype=f0.dtype, device=f0.device)
        f_cut = engine.values(torch.arange(len(cut), device=cut.device), cut)
        attr_rows = self.grad * engine.path_diff
        delta = s.mean(attr_rows.flatten(1).sum(1) - (f_cut - f0))
        return Attribution(s.structure(s.mean(attr_rows)), delta, alphas, weights,
                           {**info, "saturation": saturation, "saturation_alpha": cut,
                            "left_output_delta": s.mean(f_cut - f0),
                            "output_delta": s.mean(f1 - f0)})


class LeftIntegratedGradients:
    """IG integrated only up to where the output reaches ``saturation`` of its total change."""

    def __init__(self, model):
        self.model = model

    def attribute(
        self,
        x: Inputs,
        baselines: BaselineSpec | tuple = None,
        target: TargetSpec = None,
        *,
        steps: int = 50,
        rule: str = "gausslegendre",
        saturation: float = 0.9,
        batch_size: int | Literal["auto"] = "auto",
        additional_forward_args: tuple | None = None,
        forward_kwargs: dict | None = None,
        output: OutputSpec = None,
    ) -> Attribution:
        """Return left-IG attributions (shape of ``x``). ``delta`` is the completeness gap of
        the truncated path, ``sum - (F(x(a*)) - F(x'))``; ``info["saturation_alpha"]`` is ``a*``
        per row (row ``k * B + b``: example b, baseline k).
        Cost: as IG with the same ``steps`` (the nodes past ``a*`` are evaluated too, which lets
        ``pathattr.explain`` share the pass with IG), plus one forward pass per row.
        """
        saturation = check_saturation(saturation)
        s = setup(self.model, x, baselines, target, additional_forward_args, forward_kwargs,
                  output)
        alphas, weights = rule_tensors(rule, steps, s.x)
        with guarded(self.model):
            engine = s.engine(batch_size)
            f1, f0 = engine.endpoints()
            rows, flat_a = flat_points(len(s.x), alphas)
            acc = SaturationSum(engine.diff, f0, f1, saturation, alphas, weights)
            for ch in engine.gradients(rows, flat_a):
                acc.add(ch, ch.grads[0])
            return acc.result(engine, s, f0, f1, saturation, alphas, weights,
                              {"rule": rule, "steps": steps,
                               "gradient_evaluations": s.evaluations(steps)})
