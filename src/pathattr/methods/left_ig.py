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
from ..call import Explainer, Inputs
from ..forward import OutputSpec
from ..integrate import Integral, Integrator, Path, Points, straight, totals
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


class LeftIGIntegral(Integrator):
    """Left-IG on the shared pass of a fixed rule, in point order: ``sum_k c_k g_k`` per row
    and target (path ``r * T + t``), with ``c_k = clip(a* - t_{k-1}, 0, w_k)`` and each
    path's own ``a*``.

    ``a*`` of a path is known once a node reaches the level; until then every node but the
    path's latest has its full weight (its cell ends before the latest node, hence before
    ``a*``), so only the latest term per path waits.
    """

    OPTIONS = ("saturation",)

    def __init__(self, saturation: float = 0.9):
        self.saturation = check_saturation(saturation)
        self.started = False

    def _start(self, path: Path, like: list[Tensor]) -> None:
        self.started, self.t = True, path.n_targets
        self.m = len(path.alphas)
        self.alphas = path.alphas.double().cpu().numpy()
        w = path.weights
        self.lo = torch.as_tensor(cell_edges(w.double().cpu().numpy())[:-1], dtype=w.dtype,
                                  device=w.device)
        self.w = w
        lo = path.column(path.f0).flatten().double().cpu().numpy()
        hi = path.column(path.f1).flatten().double().cpu().numpy()
        self.f1 = hi
        self.level = lo + self.saturation * (hi - lo)
        self.sign = np.where(hi >= lo, 1.0, -1.0)
        # saturation 1 is the whole path: a* = +inf makes every c_k = w_k exactly
        self.cut = np.full(len(lo), math.inf if self.saturation == 1 else math.nan)
        # F(x) = F(x'): the level F(x') is reached at a = 0 (attributions 0, by definition)
        self.cut[(hi == lo) & (self.saturation < 1)] = 0.0
        self.prev_a, self.prev_f = np.zeros(len(lo)), lo.copy()
        n = path.rows * self.t
        self.sums = [k.new_zeros((n, *k.shape[2:])) for k in like]
        self.pending = [torch.zeros_like(acc) for acc in self.sums]
        self.pending_k = np.full(n, -1)

    def add(self, step: Points) -> None:
        if not self.started:
            self._start(step.path, step.kept)
        k_all = np.arange(step.chunk.span.start, step.chunk.span.stop) % self.m
        f_all = step.output.double().cpu().numpy()
        rows, counts = torch.unique_consecutive(step.rows.cpu(), return_counts=True)
        start = 0
        for r, n in zip(rows.tolist(), counts.tolist(), strict=True):
            seg = slice(start, start + n)
            start += n
            for t in range(self.t):
                p = r * self.t + t
                if math.isnan(self.cut[p]):
                    self._find_cut(p, self.alphas[k_all[seg]], f_all[seg, t])
                self._take(p, k_all[seg], [k[seg, t] for k in step.kept])

    def _find_cut(self, p: int, a: np.ndarray, f: np.ndarray) -> None:
        a = np.concatenate([[self.prev_a[p]], a])
        f = np.concatenate([[self.prev_f[p]], f])
        reached = np.flatnonzero(self.sign[p] * (f[1:] - self.level[p]) >= 0)
        if len(reached):
            j = reached[0]
            self.cut[p] = a[j] + (self.level[p] - f[j]) / (f[j + 1] - f[j]) * (a[j + 1] - a[j])
        else:
            self.prev_a[p], self.prev_f[p] = a[-1], f[-1]

    def _take(self, p: int, k: np.ndarray, gs: list[Tensor]) -> None:
        """Add the terms of path ``p`` whose weights are known; keep its latest one pending."""
        if self.pending_k[p] >= 0:
            k = np.concatenate([[self.pending_k[p]], k])
            gs = [torch.cat([pend[p:p + 1], g]) for pend, g in zip(self.pending, gs)]
        if len(k) == 0:
            return
        kt = torch.as_tensor(k, device=self.w.device)
        known = not math.isnan(self.cut[p])
        c = (self.cut[p] - self.lo[kt]).clamp(min=0).minimum(self.w[kt]) if known else self.w[kt]
        n = len(k) if known else len(k) - 1
        for acc, pend, g in zip(self.sums, self.pending, gs):
            acc[p] += (g[:n] * c[:n].to(g.dtype).reshape(-1, *([1] * (g.dim() - 1)))).sum(0)
            if not known:
                pend[p] = g[-1]
        self.pending_k[p] = -1 if known else k[-1]

    def finish(self, path: Path) -> Integral:
        """Left-IG with ``delta = sum - (F(x(a*)) - F(x'))``, the completeness gap of the
        truncated path. Paths whose nodes never reached the level cross it after the last
        node (``F`` reaches ``F(x)`` at ``a = 1``). Cost: one forward per row and target
        (``F`` at its ``a*``)."""
        for p in np.flatnonzero(np.isnan(self.cut)):
            a, f = self.prev_a[p], self.prev_f[p]
            self.cut[p] = a + (self.level[p] - f) / (self.f1[p] - f) * (1 - a)
            self._take(int(p), np.zeros(0, dtype=int), [acc[:0] for acc in self.sums])
        r, t = path.rows, self.t
        cut = torch.as_tensor(np.minimum(self.cut, 1.0), dtype=path.f0.dtype,
                              device=path.f0.device)
        rows = torch.arange(r, device=cut.device).repeat_interleave(t)
        # each target's own score at its own cut: the diagonal of (R, T at cut, T scores)
        f_cut = path.engine.values(rows, cut).reshape(r, t, t).diagonal(dim1=1, dim2=2)
        attrs = [path.attribution(acc.reshape(r, t, *acc.shape[1:]), i)
                 for i, acc in enumerate(self.sums)]
        acc_dtype = attrs[0].dtype
        left = f_cut.to(acc_dtype) - path.column(path.f0).to(acc_dtype)
        delta = path.mean(totals(attrs) - left)
        return Integral([path.mean(a) for a in attrs], delta, path.alphas, path.weights,
                        {"rule": path.rule, "steps": path.steps,
                         "gradient_evaluations": path.evaluations(path.steps),
                         "saturation": self.saturation,
                         "saturation_alpha": path.shown(cut.reshape(r, t)),
                         "left_output_delta": path.mean(left),
                         "output_delta": path.mean(path.out_delta())})


class LeftIntegratedGradients(Explainer):
    """IG integrated only up to where the output reaches ``saturation`` of its total change."""

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
        integrator = LeftIGIntegral.of({"steps": steps, "rule": rule, "saturation": saturation})
        s = self.prepare(x, baselines, target, additional_forward_args, forward_kwargs, output)
        return straight(self.model, s, integrator, batch_size)
