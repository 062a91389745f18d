"""The result of a faithfulness curve: where it was measured, what was measured, its area."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..baselines import BaselineSpec, make_baselines


@dataclass
class Curve:
    """fractions: ``(n,)`` x-axis in [0, 1] (fraction of pixels or units changed);
    scores: ``(B, n)`` the measured value per example at each fraction;
    auc: ``(B,)`` trapezoid-rule area under ``scores`` over ``fractions``.
    """

    fractions: Tensor
    scores: Tensor
    auc: Tensor

    @classmethod
    def from_scores(cls, fractions: Tensor, scores: Tensor) -> Curve:
        return cls(fractions, scores, torch.trapezoid(scores, fractions, dim=-1))


def baseline_like(x: Tensor, baseline: BaselineSpec) -> Tensor:
    """The reference input of a metric, shaped like ``x``: any single baseline spec of the
    methods (``baselines.make_baselines``), zeros by default."""
    b = make_baselines(x, baseline)
    if b.shape[0] != 1:
        raise ValueError(f"baseline gives {b.shape[0]} baselines per example; a metric takes one")
    return b[0]
