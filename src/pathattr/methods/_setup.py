"""The preparation every input-space method shares: validate, place, expand baselines."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..baselines import BaselineSpec, make_baselines
from ..engine import PathEngine, model_device_dtype
from ..targets import TargetSpec, resolve_target
from ..validate import check_eval_mode, check_tensor


@dataclass
class Setup:
    """Inputs repeated once per baseline: rows ``k * B + b`` pair example b with baseline k."""

    x: Tensor          # (K*B, *S)
    baseline: Tensor   # (K*B, *S)
    target: object     # resolved for K*B rows
    k: int
    b: int

    def engine(self, model, batch_size, channels_last="auto") -> PathEngine:
        return PathEngine(model, self.x, self.baseline, self.target, batch_size, channels_last)

    def mean(self, t: Tensor) -> Tensor:
        """Average per-row results over the K baselines: ``(K*B, ...) -> (B, ...)``."""
        return t.reshape(self.k, self.b, *t.shape[1:]).mean(0)


def setup(model, x: Tensor, baselines: BaselineSpec, target: TargetSpec) -> Setup:
    """Validate ``x``, move it to the model's device, and expand baselines and targets."""
    check_tensor(x, "x")
    check_eval_mode(model)
    device, _ = model_device_dtype(model, x)
    x = x.to(device)
    base = make_baselines(x, baselines)
    k, b = base.shape[0], x.shape[0]
    t = resolve_target(target, b, device)
    if isinstance(t, Tensor):
        t = t.repeat(k)
    xs = x.unsqueeze(0).expand(k, *x.shape).reshape(k * b, *x.shape[1:])
    return Setup(xs, base.reshape(k * b, *x.shape[1:]), t, k, b)


def flat_points(n_rows: int, alphas: Tensor) -> tuple[Tensor, Tensor]:
    """Every row at every alpha, row-major: ``(rows, alphas)`` of length ``n_rows * m``."""
    rows = torch.arange(n_rows, device=alphas.device).repeat_interleave(len(alphas))
    return rows, alphas.repeat(n_rows)
