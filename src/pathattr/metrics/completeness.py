"""The completeness gap of a path-method result, relative to the output change it explains."""

from __future__ import annotations

import torch
from torch import Tensor

from ..engine import guarded
from ..methods._setup import setup
from ..result import Attribution


def completeness(result: Attribution) -> Tensor:
    """``|delta| / |F(x) - F(x')|`` per example, shape ``(B,)``: 0 means the attributions add up
    exactly to the output change. Cost: none beyond reading the result.
    """
    if not isinstance(result, Attribution):
        raise TypeError(f"result must be an Attribution, got {type(result).__name__}")
    if result.delta is None:
        raise ValueError("result has no completeness gap (delta is None): the method that made "
                         "it has no completeness property")
    if "output_delta" not in result.info:
        raise ValueError("result.info has no 'output_delta' (F(x) - F(x')), so the gap cannot "
                         "be made relative")
    return result.relative_delta()


def convergence_delta(model, attributions: Tensor | tuple[Tensor, ...], start_point,
                      end_point, target=None, additional_forward_args: tuple | None = None, *,
                      forward_kwargs: dict | None = None, output=None) -> Tensor:
    """``sum(attributions) - (F(end_point) - F(start_point))`` per example, ``(B,)``: the
    completeness gap of attributions computed elsewhere or post-processed (Captum's
    ``compute_convergence_delta``). ``end_point`` is the input, ``start_point`` its baseline (a
    number, a tensor broadcast to it, or one per input of a tuple); ``target``,
    ``additional_forward_args``, ``forward_kwargs`` and ``output`` as in ``attribute``.
    Attributions may be an input's or a layer's: only their sum per example is read. Cost:
    two forwards, in float32 or wider. Raises on several baselines (their gap is not one
    number per example) and on attributions with another batch size."""
    s = setup(model, end_point, start_point, target, additional_forward_args, forward_kwargs,
              output, integers=True)
    if s.k != 1:
        raise ValueError(f"start_point gives {s.k} baselines per example; give one")
    parts = attributions if isinstance(attributions, tuple) else (attributions,)
    if not parts or not all(isinstance(a, Tensor) for a in parts):
        raise TypeError("attributions must be a tensor or a tuple of tensors")
    if any(a.dim() == 0 or a.shape[0] != s.b for a in parts):
        raise ValueError(f"attributions have batch sizes {[tuple(a.shape) for a in parts]}, "
                         f"end_point {s.b} examples")
    wide = torch.promote_types(parts[0].dtype, torch.float32)
    total = sum(a.detach().reshape(s.b, -1).to(wide).sum(1) for a in parts)
    rows = torch.arange(s.b, device=s.x.device)
    with guarded(model), torch.no_grad():
        f1, f0 = (s.target.select(s.call(t, rows), rows).to(wide) for t in (s.x, s.baseline))
    return total.to(f1.device) - (f1 - f0)
