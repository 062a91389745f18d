"""Metrics of a behaviour, as ``metric(output, examples) -> (rows,)`` callables: what
``circuits.attribute`` and ``circuits.patch`` explain (any ``target=`` works there too)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

Metric = Callable[[Tensor, Tensor], Tensor]


def _ids(v: int | Sequence[int] | Tensor, what: str) -> Tensor:
    t = torch.as_tensor(v)
    if t.is_floating_point() or t.dim() > 1:
        raise ValueError(f"{what} must be a token id or one per example, got {v!r}")
    return t.long()


def _difference(right: int | Sequence[int] | Tensor, wrong: int | Sequence[int] | Tensor,
                position: int, scale: Callable[[Tensor], Tensor]) -> Metric:
    r, w = _ids(right, "right"), _ids(wrong, "wrong")

    def metric(output: Tensor, examples: Tensor) -> Tensor:
        z = scale(output[:, position] if output.dim() == 3 else output)
        r_, w_ = (t.to(z.device)[examples] if t.dim() else t.to(z.device).expand(len(z))
                  for t in (r, w))
        return z.gather(1, r_[:, None])[:, 0] - z.gather(1, w_[:, None])[:, 0]

    return metric


def logit_diff(right: int | Sequence[int] | Tensor, wrong: int | Sequence[int] | Tensor,
               position: int = -1) -> Metric:
    """``logit[right] - logit[wrong]`` at ``position`` (default the last) of logits
    ``(rows, T, vocab)``: token ids, one for every example or one per example."""
    return _difference(right, wrong, position, lambda z: z)


def prob_diff(right: int | Sequence[int] | Tensor, wrong: int | Sequence[int] | Tensor,
              position: int = -1) -> Metric:
    """``p(right) - p(wrong)`` under the softmax at ``position``: saturates, so it separates
    first-order estimators from exact ones more than a logit difference does."""
    return _difference(right, wrong, position, lambda z: z.softmax(-1))
