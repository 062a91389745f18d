"""Which scalar of the model output is explained, per example."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

TargetSpec = int | Sequence[int] | Tensor | Callable[[Tensor], Tensor] | None


def resolve_target(target: TargetSpec, batch: int,
                   device: torch.device) -> Tensor | Callable | None:
    """Normalise ``target`` to a ``(batch,)`` long tensor, a callable, or None.

    None means the model already returns one scalar per example.
    """
    if target is None or callable(target):
        return target
    if isinstance(target, bool):
        raise TypeError("target must be an int, a sequence of ints, a tensor or a callable")
    if isinstance(target, int):
        return torch.full((batch,), target, dtype=torch.long, device=device)
    t = torch.as_tensor(target, device=device)
    if t.is_floating_point() or t.is_complex():
        raise TypeError(f"target must hold integer class indices, got dtype {t.dtype}")
    t = t.long().reshape(-1)
    if t.numel() == 1:
        return t.expand(batch).clone()
    if t.numel() != batch:
        raise ValueError(f"target has {t.numel()} entries, expected 1 or {batch} (one per example)")
    return t


def select(output: Tensor, target: Tensor | Callable | None, rows: Tensor | None = None) -> Tensor:
    """Pick one scalar per row of ``output``.

    ``rows`` gives, per row, the example it belongs to (path points of many examples share a
    chunk), so that per-example integer targets can be gathered. Returns a 1-D tensor.
    """
    if callable(target):
        out = target(output)
        if not isinstance(out, Tensor) or out.shape != (output.shape[0],):
            raise ValueError(
                f"target callable must return one scalar per row, shape ({output.shape[0]},); "
                f"got {getattr(out, 'shape', type(out).__name__)}"
            )
        return out
    if target is None:
        if output.dim() == 1:
            return output
        if output.dim() == 2 and output.shape[1] == 1:
            return output[:, 0]
        raise ValueError(
            f"target is required: the model returns shape {tuple(output.shape[1:])} per example"
        )
    if output.dim() != 2:
        raise ValueError(
            f"an integer target needs a model output of shape (batch, classes), got "
            f"{tuple(output.shape)}; pass a callable target instead"
        )
    t = target if rows is None else target[rows]
    n = output.shape[1]
    if (t < 0).any() or (t >= n).any():
        bad = t[(t < 0) | (t >= n)][0].item()
        raise ValueError(f"target {bad} is out of range for a model with {n} outputs")
    return output.gather(1, t[:, None])[:, 0]
