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
from ..engine import accumulation_dtype, guarded
from ..forward import OutputSpec
from ..result import Attribution
from ..targets import TargetSpec
from ..validate import check_steps
from ._setup import ConvergenceDelta, Inputs, flat_points, setup


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
            dtype = accumulation_dtype(s.x.dtype)
            acc = torch.zeros(s.x.shape, dtype=dtype, device=s.x.device)
            share = torch.zeros_like(acc)        # the previous node's g^2 / ||g||^2, per row
            f_prev = torch.zeros(len(s.x), dtype=dtype, device=s.x.device)
            for ch in engine.gradients(rows, flat_a):
                if ch.output.dim() != 1:
                    raise ValueError("IDGI needs one target output per example")
                now = shares(ch.grads[0].to(dtype))
                for j, (r, a) in enumerate(zip(ch.rows.tolist(), ch.alphas.tolist())):
                    f = ch.output[j].to(dtype)
                    if a > 0:  # the step from the previous node of this row ends here
                        acc[r] += share[r] * (f - f_prev[r])
                    share[r], f_prev[r] = now[j], f
            acc += share * (f1.to(dtype) - f_prev).reshape(-1, *[1] * (acc.dim() - 1))
        attr = s.mean(acc)
        out = s.mean((f1 - f0).to(dtype))
        return Attribution(s.structure(attr), attr.flatten(1).sum(1) - out, alphas, None,
                           {"steps": steps, "gradient_evaluations": steps * s.k,
                            "output_delta": out})
