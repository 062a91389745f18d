"""IDGI (Yang, Wang and Bilgic, CVPR 2023, "IDGI: A Framework to Eliminate Explanation Noise
from Integrated Gradients") on the straight path.

On the nodes ``x_k = x' + (k / n)(x - x')``, ``k = 0..n``, each step's output change
``d_k = F(x_{k+1}) - F(x_k)`` is attributed along the gradient ``g_k = grad F(x_k)`` only:

    IDGI_i = sum_{k<n}  g_{k,i}^2 / ||g_k||^2 * d_k

Each step's shares sum to one, so the attributions sum to ``F(x) - F(x')`` exactly: ``delta``
is rounding, plus the change of any step whose gradient is zero (it has no direction to be
attributed along, and stays in the gap). IG's term ``g_{k,i} (x_i - x'_i) / n`` instead keeps
the parts of the step orthogonal to the gradient, which change nothing and are the noise.
Cost: IG's with ``n`` left Riemann nodes: one forward and backward per node; ``F(x)`` is the
endpoint forward.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from ..baselines import BaselineSpec
from ..call import ConvergenceDelta, Inputs
from ..forward import OutputSpec
from ..integrate import Integral, Integrator, Path, Points, straight, totals
from ..result import Attribution
from ..targets import TargetSpec


def shares(g: Tensor) -> Tensor:
    """``g_i^2 / ||g||^2`` per row of ``g`` ``(R, *S)``: the fraction of a step's output change
    each feature gets (rows with a zero gradient get zeros). IDGI on any path is
    ``sum_k shares(g_k) * (F(x_{k+1}) - F(x_k))``."""
    sq = g.square()
    norm = sq.flatten(1).sum(1)
    return sq / torch.where(norm > 0, norm, 1.0).reshape(-1, *[1] * (g.dim() - 1))


class IDGIWalk:
    """IDGI along a path walked node by node (Guided IG, Blur IG): ``add`` the output and
    gradient at each node in path order, ``end`` with the output at the path's end.
    Memory: one gradient-sized tensor besides the sum."""

    def __init__(self) -> None:
        self.sum: Tensor | None = None
        self._share: Tensor | None = None
        self._f: Tensor | None = None

    def _close(self, f: Tensor) -> None:
        if self._share is None or self._f is None:
            raise ValueError("IDGIWalk.end() before any add()")
        change = (f - self._f).reshape(-1, *[1] * (self._share.dim() - 1))
        self.sum = self._share * change if self.sum is None else self.sum + self._share * change

    def add(self, f: Tensor, g: Tensor) -> None:
        """Node outputs ``f`` ``(B,)`` and gradients ``g`` ``(B, *S)``."""
        if self._share is not None:
            self._close(f)
        self._share, self._f = shares(g), f

    def end(self, f: Tensor) -> Tensor:
        """The attributions ``(B, *S)``, summing to ``f - F(first node)``."""
        self._close(f)
        assert self.sum is not None  # _close set it
        return self.sum


class IDGIIntegral(Integrator):
    """IDGI of every row's and target's straight path on the shared pass, whose nodes must be
    ``k / steps`` (``rule="riemann_left"``), visited per row in increasing alpha from 0
    (``flat_points`` order). Each node's shares ``g^2 / ||g||^2`` (over every space of the
    path) wait for the next node's output, which closes the step; ``finish`` closes each
    row's last step at ``F(x)``. Memory: two tensors of the kept shape per row and target."""

    RULE = "riemann_left"

    def __init__(self) -> None:
        self.acc: list[Tensor] = []

    def add(self, step: Points) -> None:
        path = step.path
        sq = step.squares
        norm = totals(sq)  # (n, T)
        norm = torch.where(norm > 0, norm, 1.0)
        now = [q / norm.reshape(*norm.shape, *[1] * (q.dim() - 2)) for q in sq]
        if not self.acc:
            # one spare row past the last: where points that do not close their row in this
            # chunk write (index_copy_ must not see a row twice)
            self.acc = [q.new_zeros((path.rows + 1, *q.shape[1:])) for q in now]
            self.share = [torch.zeros_like(a) for a in self.acc]  # each row's previous node's
            self.f_prev = norm.new_zeros((path.rows + 1, norm.shape[1]))
        f = step.output.to(norm.dtype)
        rows = step.rows
        # a point's previous node is the point before it when that is its row's (a row's
        # nodes are contiguous, in increasing alpha), else the one the last chunk left
        after = torch.zeros_like(rows, dtype=torch.bool)
        after[1:] = rows[1:] == rows[:-1]
        closes = torch.ones_like(after)
        closes[:-1] = rows[:-1] != rows[1:]
        to = torch.where(closes, rows, path.rows)
        change = (f - torch.where(after[:, None], f.roll(1, 0), self.f_prev[rows]))
        change = change * (step.alphas > 0).to(change.dtype)[:, None]  # alpha 0 ends no step
        for acc, share, q in zip(self.acc, self.share, now):
            wide = [1] * (q.dim() - 2)
            before = torch.where(after.reshape(-1, 1, *wide), q.roll(1, 0), share[rows])
            acc.index_add_(0, rows, before * change.reshape(*change.shape, *wide))
            share.index_copy_(0, to, q)
        self.f_prev.index_copy_(0, to, f)

    def finish(self, path: Path) -> Integral:
        f1 = path.column(path.f1).to(self.f_prev.dtype)
        change = f1 - self.f_prev[:-1]
        attrs = [acc[:-1] + share[:-1] * change.reshape(*change.shape, *[1] * (acc.dim() - 2))
                 for acc, share in zip(self.acc, self.share)]
        out = path.column(path.f1 - path.f0).to(attrs[0].dtype)
        return Integral([path.mean(a) for a in attrs],
                        path.mean(totals(attrs) - out), path.alphas, None,
                        {"steps": path.steps, "gradient_evaluations":
                         path.evaluations(path.steps), "output_delta": path.mean(out)})


class IDGI(ConvergenceDelta):
    """Integrated Gradients with each step's output change attributed along its gradient."""

    def attribute(self, x: Inputs, baselines: BaselineSpec | tuple = None,
                  target: TargetSpec = None, *, steps: int = 50,
                  batch_size: int | Literal["auto"] = "auto",
                  additional_forward_args: tuple | None = None,
                  forward_kwargs: dict | None = None, output: OutputSpec = None
                  ) -> Attribution:
        """Return IDGI attributions (the structure of ``x``) with ``delta`` per example;
        ``alphas`` are the ``steps`` nodes where gradients were taken (``k / steps``).

        Cost: ``steps`` forward+backward passes per example and baseline, plus two forwards
        for the endpoints; memory of IG's plus one input-sized tensor per example.
        """
        integrator = IDGIIntegral.of({"steps": steps})
        s = self.prepare(x, baselines, target, additional_forward_args, forward_kwargs, output)
        return straight(self.model, s, integrator, batch_size)
