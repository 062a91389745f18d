"""The result of a faithfulness curve: where it was measured, what was measured, its area."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..validate import check_tensor


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


def baseline_like(x: Tensor, baseline: Tensor | None) -> Tensor:
    """The reference input of a metric, shaped like ``x``: zeros by default, or ``baseline``
    given per example or shared (``x.shape[1:]``)."""
    if baseline is None:
        return torch.zeros_like(x)
    baseline = check_tensor(baseline, "baseline")
    if baseline.shape not in (x.shape, x.shape[1:]):
        raise ValueError(f"baseline has shape {tuple(baseline.shape)}, expected "
                         f"{tuple(x.shape)} or {tuple(x.shape[1:])}")
    return baseline.to(x).expand_as(x)
