"""Guided Integrated Gradients (Kapishnikov et al. 2021), with the bounded path of its §3.3.

The path is built while integrating: at every step the features with the smallest absolute
gradient move toward the input first, until the path has covered ``1/steps`` of the total L1
distance; no feature may lead or trail the straight path by more than ``max_dist`` (in alpha).

    GuidedIG_i = sum_steps g_i(x_t) (x_{t+1, i} - x_{t, i})

Each step needs the gradient at the point the previous step reached, so steps run one after
another; the examples of a batch move together. The path state is kept in float64 (as PAIR
saliency does), so that the L1 bookkeeping is exact; the model sees its own dtype.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from ..baselines import BaselineSpec
from ..call import Explainer, Inputs
from ..engine import guarded
from ..forward import OutputSpec
from ..result import Attribution
from ..targets import TargetSpec
from ..validate import check_flag, check_number, check_steps
from .idgi import IDGIWalk

#: Relative and absolute tolerance of "the step has covered its L1 distance" (PAIR's value).
EPSILON = 1e-9


def _guided_step(x: Tensor, grad: Tensor, base: Tensor, diff: Tensor, l1_total: Tensor,
                 step: int, steps: int, fraction: float, max_dist: float) -> Tensor:
    """Move ``x`` (float64, flat ``(B, n)``) along one step; returns the attribution of the
    step, ``grad * (x_new - x_old)``. ``x`` is updated in place."""
    alpha = (step + 1) / steps
    a_min, a_max = max(alpha - max_dist, 0.0), min(alpha + max_dist, 1.0)
    x_min, x_max = base + a_min * diff, base + a_max * diff
    l1_target = l1_total * (1 - alpha)
    start = x.clone()
    moving = torch.ones(len(x), dtype=torch.bool, device=x.device)
    n = x.shape[1]
    k = int(fraction * (n - 1)) + 1  # numpy's quantile(..., interpolation="lower"), 1-based
    while moving.any():
        m = moving[:, None]
        # features with no distance to cover count as already at the front of the path
        x_alpha = torch.where(diff != 0, (x - base) / diff.where(diff != 0, 1.0), a_max)
        x.copy_(torch.where(m & (x_alpha < a_min), x_min, x))
        l1_now = (x - base - diff).abs().sum(1)
        done = torch.isclose(l1_now, l1_target, rtol=EPSILON, atol=EPSILON)
        moving &= ~done
        m = moving[:, None]
        free = x != x_max
        mag = torch.where(free, grad.abs(), torch.inf)
        threshold = mag.kthvalue(k, dim=1, keepdim=True).values
        chosen = (mag <= threshold) & free & m
        l1_chosen = ((x - x_max).abs() * chosen).sum(1)
        gamma = torch.where(l1_chosen > 0, (l1_now - l1_target) / l1_chosen, torch.inf)
        g = gamma[:, None]
        x.copy_(torch.where(chosen, torch.where(g > 1, x_max, x + g * (x_max - x)), x))
        # PAIR's loop: a step ends when the L1 target is met or gamma <= 1 moved enough
        moving &= gamma > 1
    return grad * (x - start)


class GuidedIntegratedGradients(Explainer):
    """Guided IG from each baseline to the input, on the bounded adaptive path."""

    def attribute(
        self,
        x: Inputs,
        baselines: BaselineSpec | tuple = None,
        target: TargetSpec = None,
        *,
        steps: int = 200,
        fraction: float = 0.25,
        max_dist: float = 0.02,
        idgi: bool = False,
        batch_size: int | Literal["auto"] = "auto",
        additional_forward_args: tuple | None = None,
        forward_kwargs: dict | None = None,
        output: OutputSpec = None,
    ) -> Attribution:
        """Return Guided IG attributions (shape of ``x``) with ``delta = sum - (F(x) - F(x'))``
        (a left-Riemann sum along the guided path, so ``delta`` shrinks as ``steps`` grow).
        ``alphas`` are the steps' L1 progress ``t / steps`` where gradients are taken.
        ``max_dist = 0`` is IG on the straight path (left Riemann), ``1`` unbounded Guided IG.
        ``idgi=True``: each step's output change ``F(x_{t+1}) - F(x_t)`` is attributed along
        the gradient at ``x_t`` only (``methods.idgi``; the path is the same), so the sum is
        ``F(x) - F(x')`` to rounding.
        Cost: ``steps`` forward+backward passes per example and baseline, run as ``steps``
        sequential batches, plus two forward passes; the path update is a few elementwise
        passes and one k-th value per inner iteration.
        """
        check_steps(steps)
        check_flag(idgi, "idgi")
        check_number(fraction, "fraction", 0, 1)
        check_number(max_dist, "max_dist", 0, 1)
        s = self.prepare(x, baselines, target, additional_forward_args, forward_kwargs, output)
        shape = s.x.shape
        base = s.baseline.flatten(1).double()
        diff = s.x.flatten(1).double() - base
        l1_total = diff.abs().sum(1)
        point = base.clone()
        attr = torch.zeros_like(base)
        along = IDGIWalk() if idgi else None
        with guarded(self.model):
            engine = s.engine(batch_size)
            f1, f0, _ = engine.ends([])
            at = engine.evaluator()
            for step in range(steps):
                f, grad = at.gradients(point.to(s.x.dtype).reshape(shape), s.target)
                grad = grad.flatten(1).double()
                if along is not None:
                    along.add(f.double(), grad)
                attr += _guided_step(point, grad, base, diff, l1_total, step, steps, fraction,
                                     max_dist)
            if along is not None:
                attr = along.end(f1.double())
        attr = attr.to(s.x.dtype).reshape(shape)
        out_delta = s.mean(f1 - f0)
        alphas = torch.arange(steps, dtype=s.x.dtype, device=s.x.device) / steps
        return Attribution(s.structure(s.mean(attr)), s.mean(attr.flatten(1).sum(1)) - out_delta,
                           alphas,
                           torch.full_like(alphas, 1 / steps),
                           {"steps": steps, "fraction": fraction, "max_dist": max_dist,
                            "idgi": idgi,
                            "output_delta": out_delta})
