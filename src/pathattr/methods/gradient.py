"""Plain gradient methods: Saliency |dF/dx| and Input x Gradient."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from ..engine import guarded
from ..result import Attribution
from ..targets import TargetSpec
from ._setup import setup


def _gradient(model, x: Tensor, target: TargetSpec, batch_size) -> tuple[Tensor, Tensor]:
    s = setup(model, x, None, target)
    with guarded(model):
        engine = s.engine(model, batch_size)
        rows = torch.arange(len(s.x), device=s.x.device)
        ones = s.x.new_ones(len(s.x))
        grad = torch.cat([ch.grads[0] for ch in engine.gradients(rows, ones)])
    return s.x, grad


class Saliency:
    """The gradient of the target at the input (absolute value by default)."""

    def __init__(self, model):
        self.model = model

    def attribute(self, x: Tensor, target: TargetSpec = None, abs: bool = True,
                  batch_size: int | Literal["auto"] = "auto") -> Attribution:
        """Return ``|dF/dx|`` (or the signed gradient). Cost: one forward+backward."""
        _, g = _gradient(self.model, x, target, batch_size)
        return Attribution(g.abs() if abs else g)


class InputXGradient:
    """``x * dF/dx``: IG with one Riemann-right step from a zero baseline."""

    def __init__(self, model):
        self.model = model

    def attribute(self, x: Tensor, target: TargetSpec = None,
                  batch_size: int | Literal["auto"] = "auto") -> Attribution:
        """Return ``x * dF/dx``. Cost: one forward+backward."""
        xs, g = _gradient(self.model, x, target, batch_size)
        return Attribution(xs * g)
