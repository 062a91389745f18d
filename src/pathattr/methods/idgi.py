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
from ..call import ConvergenceDelta, Inputs, flat_points, setup
from ..engine import Chunk, accumulation_dtype, guarded
from ..forward import OutputSpec
from ..result import Attribution
from ..targets import TargetSpec
from ..validate import check_steps


def shares(g: Tensor) -> Tensor:
    """``g_i^2 / ||g||^2`` per row of ``g`` ``(R, *S)``: the fraction of a step's output change
    each feature gets (rows with a zero gradient get zeros). IDGI on any path is
    ``sum_k shares(g_k) * (F(x_{k+1}) - F(x_k))``."""
    sq = g.square()
    norm = sq.flatten(1).sum(1)
    return sq / torch.where(norm > 0, norm, 1.0).reshape(-1, *[1] * (g.dim() - 1))


class Steps:
    """IDGI along a path walked node by node (Guided IG, Blur IG): ``add`` the output and
    gradient at each node in path order, ``end`` with the output at the path's end.
    Memory: one gradient-sized tensor besides the sum."""

    def __init__(self) -> None:
        self.sum: Tensor | None = None
        self._share: Tensor | None = None
        self._f: Tensor | None = None

    def _close(self, f: Tensor) -> None:
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
        return self.sum


class RowSteps:
    """IDGI of every row's straight path from the engine's chunks, each row's nodes visited
    in increasing alpha starting at 0 (``flat_points`` order); ``result(f1)`` closes each
    row's last step at ``F(x)``. Memory: two tensors of the rows' shape."""

    def __init__(self, like: Tensor):
        dtype = accumulation_dtype(like.dtype)
        self.acc = torch.zeros(like.shape, dtype=dtype, device=like.device)
        self.share = torch.zeros_like(self.acc)  # the previous node's g^2 / ||g||^2, per row
        self.f_prev = torch.zeros(len(like), dtype=dtype, device=like.device)

    def add(self, ch: Chunk, g: Tensor) -> None:
        """One chunk of points with ``g``, the gradient at each (input or path layer)."""
        if ch.output.dim() != 1:
            raise ValueError("IDGI needs one target output per example")
        now = shares(g.to(self.acc.dtype))
        for j, (r, a) in enumerate(zip(ch.rows.tolist(), ch.alphas.tolist())):
            f = ch.output[j].to(self.acc.dtype)
            if a > 0:  # the step from the previous node of this row ends here
                self.acc[r] += self.share[r] * (f - self.f_prev[r])
            self.share[r], self.f_prev[r] = now[j], f

    def result(self, f1: Tensor) -> Tensor:
        change = (f1.to(self.acc.dtype) - self.f_prev).reshape(-1, *[1] * (self.acc.dim() - 1))
        return self.acc + self.share * change


class IDGI(ConvergenceDelta):
    """Integrated Gradients with each step's output change attributed along its gradient."""

    def __init__(self, model):
        self.model = model

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
        check_steps(steps)
        s = setup(self.model, x, baselines, target, additional_forward_args, forward_kwargs,
                  output)
        with guarded(self.model):
            engine = s.engine(batch_size)
            f1, f0 = engine.endpoints()
            alphas = torch.arange(steps, dtype=s.x.dtype, device=s.x.device) / steps
            rows, flat_a = flat_points(len(s.x), alphas)
            along = RowSteps(s.x)
            for ch in engine.gradients(rows, flat_a):
                along.add(ch, ch.grads[0])
            acc = along.result(f1)
        dtype = acc.dtype
        attr = s.mean(acc)
        out = s.mean((f1 - f0).to(dtype))
        return Attribution(s.structure(attr), attr.flatten(1).sum(1) - out, alphas, None,
                           {"steps": steps, "gradient_evaluations": s.evaluations(steps),
                            "output_delta": out})
