"""Which scalar of the model output is explained, per example.

Captum's convention: an int is a class for every example; a tuple of ints indexes one example's
output, e.g. ``(position, class)`` for ``(B, L, V)`` logits, the same for every example; a list
(or a 1-D tensor) has one int or one tuple per example; a ``(B, d)`` integer tensor has one
``d``-index per example; a callable receives the chosen output and returns one scalar per row.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

TargetSpec = (int | tuple[int, ...] | Sequence[int] | Sequence[tuple[int, ...]] | Tensor
              | Callable[..., Tensor] | None)


def _wants_examples(fn: Callable) -> bool:
    """Whether ``fn`` takes a second positional argument (the example index of each row)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)


class Target:
    """A resolved target for ``n`` examples.

    ``index``: ``(n, d)`` long, one ``d``-index into each example's output (``d = 1``: a class);
    or ``fn``: a callable ``fn(output)`` or ``fn(output, examples)``; or neither: the model
    returns one scalar per example. Rows of any evaluated batch belong to example ``row % n``
    (inputs repeated once per baseline, and path points, keep that order). ``outputs``: how
    many scalars per row a callable returns when it explains several at once (``(n, outputs)``,
    e.g. every target token of a sequence).
    """

    def __init__(self, n: int, index: Tensor | None = None, fn: Callable | None = None,
                 outputs: int | None = None):
        self.n, self.index, self.fn, self.outputs = n, index, fn, outputs
        self._examples_arg = fn is not None and _wants_examples(fn)

    @property
    def classes(self) -> Tensor:
        """``(n,)`` class ids, for methods that need a class per example (AGI, metrics)."""
        if self.index is None or self.index.shape[1] != 1:
            raise TypeError("this method needs one integer class per example as target, got "
                            + ("a callable" if self.fn is not None else "no target"
                               if self.index is None else "multi-dimensional indices"))
        return self.index[:, 0]

    def examples(self, n_rows: int, rows: Tensor | None, device) -> Tensor:
        if rows is None:
            rows = torch.arange(n_rows, device=device)
        return rows % max(self.n, 1)

    def select(self, output: Tensor, rows: Tensor | None = None) -> Tensor:
        """One scalar per row of ``output`` (``rows``: each row's position in the batch the
        target was resolved for, default ``0..n_rows-1``). Returns a 1-D tensor."""
        if not isinstance(output, Tensor):
            raise TypeError(f"the model output must be a tensor here, got {type(output).__name__}")
        n_rows = output.shape[0] if output.dim() else 0
        if self.fn is not None:
            ex = self.examples(n_rows, rows, output.device)
            out = self.fn(output, ex) if self._examples_arg else self.fn(output)
            want = (n_rows,) if self.outputs is None else (n_rows, self.outputs)
            if not isinstance(out, Tensor) or out.shape != want:
                raise ValueError(
                    f"target callable must return one scalar per row, shape {want}; "
                    f"got {getattr(out, 'shape', type(out).__name__)}"
                )
            return out
        if self.index is None:
            if output.dim() == 1:
                return output
            if output.dim() >= 2 and output.shape[1:].numel() == 1:
                return output.reshape(n_rows)
            raise ValueError(
                f"target is required: the model returns shape {tuple(output.shape[1:])} per "
                f"example; give a class index, or a tuple such as (position, class)"
            )
        d = self.index.shape[1]
        shape = tuple(output.shape[1:])
        if len(shape) != d:
            kind = "a class index" if d == 1 else f"a {d}-index"
            hint = (f"; give tuples of {len(shape)} indices, e.g. (position, class)"
                    if len(shape) > 1 else "; pass a callable target instead")
            raise ValueError(f"target is {kind}, but the model returns shape {shape} per "
                             f"example{hint}")
        t = self.index[self.examples(n_rows, rows, self.index.device)]
        limits = torch.as_tensor(shape, device=t.device)
        bad = ((t < 0) | (t >= limits)).any(1)
        if bad.any():
            which = tuple(t[bad][0].tolist())
            which = which[0] if d == 1 else which
            raise ValueError(f"target {which} is out of range for a model output of shape "
                             f"{shape} per example")
        strides = torch.as_tensor([math.prod(shape[j + 1:]) for j in range(d)],
                                  device=t.device)
        flat = (t * strides).sum(1)
        size = math.prod(shape)
        return output.reshape(n_rows, size).gather(1, flat[:, None].to(output.device))[:, 0]


def _index_tuple(v: object) -> tuple[int, ...] | None:
    if isinstance(v, (tuple, list)) and v and all(
            isinstance(c, int) and not isinstance(c, bool) for c in v):
        return tuple(v)
    return None


def resolve_target(target: TargetSpec | Target, batch: int, device: torch.device | str = "cpu"
                   ) -> Target:
    """Normalise ``target`` for ``batch`` examples (see the module docstring)."""
    if isinstance(target, Target):
        return target
    if target is None:
        return Target(batch)
    if callable(target) and not isinstance(target, Tensor):
        return Target(batch, fn=target)
    if isinstance(target, bool):
        raise TypeError("target must be an int, a tuple, a list, a tensor or a callable; "
                        "got a bool")
    if isinstance(target, int):
        return Target(batch, torch.full((batch, 1), target, dtype=torch.long, device=device))
    if isinstance(target, tuple):
        idx = _index_tuple(target)
        if idx is None:
            raise TypeError(f"a tuple target indexes one example's output and must hold ints, "
                            f"got {target!r}; give one target per example as a list")
        return Target(batch, torch.tensor(idx, device=device).expand(batch, -1).clone())
    if isinstance(target, Sequence) and not isinstance(target, str) and target and all(
            isinstance(v, tuple) for v in target):
        rows = [r for r in map(_index_tuple, target) if r is not None]
        if len(rows) != len(target) or len({len(r) for r in rows}) != 1:
            raise TypeError(f"target tuples must hold ints and have one length, got {target!r}")
        t = torch.tensor(rows, dtype=torch.long, device=device)
    else:
        try:
            t = torch.as_tensor(target, device=device)
        except (TypeError, ValueError, RuntimeError) as e:
            raise TypeError(f"target must be an int, a tuple, a list, a tensor or a callable, "
                            f"got {type(target).__name__}") from e
        if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
            raise TypeError(f"target must hold integer indices, got dtype {t.dtype}")
        t = t.long()
        if t.dim() <= 1:
            t = t.reshape(-1, 1)
        elif t.dim() != 2:
            raise ValueError(f"a target tensor must be (B,) or (B, d), got {tuple(t.shape)}")
    if t.shape[0] == 1:
        return Target(batch, t.expand(batch, -1).clone())
    if t.shape[0] != batch:
        raise ValueError(f"target has {t.shape[0]} entries, expected 1 or {batch} "
                         f"(one per example)")
    return Target(batch, t)


def select(output: Tensor, target: Target | TargetSpec, rows: Tensor | None = None) -> Tensor:
    """``target.select(output, rows)``: one scalar per row of ``output`` (a spec that is not
    resolved yet is resolved for the rows of ``output``)."""
    if not isinstance(target, Target):
        target = resolve_target(target, output.shape[0], output.device)
    return target.select(output, rows)
