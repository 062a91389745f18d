"""Neuron ablation: reset a layer's top-ranked units and measure how far the target output moves.

A good importance score moves the output further with fewer units reset (Dhamdhere et al. 2018,
Shrikumar et al. 2018). Random scores are the control.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..baselines import BaselineSpec
from ..call import Inputs, Setup, setup
from ..forward import OutputSpec
from ..guard import model_guard
from ..layers import LayerSpec, StopForward, Tap, resolve_layer, stop_when_tapped, tap_layers
from ..targets import TargetSpec
from ..validate import check_finite, check_positive_int, check_tensor
from .curve import Curve


def random_scores(shape: Sequence[int], generator: torch.Generator | None = None) -> Tensor:
    """Uniform random scores of ``shape``: the control ranking for ``neuron_ablation``."""
    return torch.rand(tuple(shape), generator=generator)


def neuron_ablation(model: nn.Module, x: Inputs, layer: LayerSpec, scores: Tensor,
                    target: TargetSpec = None, ks: Sequence[int] | None = None,
                    reset: str = "baseline", baseline: BaselineSpec | tuple = None,
                    batch_size: int = 64, *, additional_forward_args: tuple | None = None,
                    forward_kwargs: dict | None = None, output: OutputSpec = None) -> Curve:
    """Reset the ``k`` highest-scoring units of ``layer`` for each ``k`` in ``ks``.

    scores: ``(B, *S)`` for the layer's output of shape ``(B, *S)`` ranks single neurons;
    ``(B, C)`` for an output ``(B, C, ...)`` ranks whole channels.
    reset: ``"baseline"`` sets a unit to its activation at ``baseline`` (any baseline spec of
    the attribution methods, zeros by default; token ids take an id such as the pad id),
    ``"zero"`` to zero. ``x``, the forward arguments and ``output`` follow the methods'
    conventions (tuples, token ids, attention masks indexed per example).
    ks: increasing unit counts in ``[0, n_units]``; default about 20 even steps from 0 to all.
    Returns a ``Curve`` whose scores are ``F(x) - F(x with the top k reset)`` (the target output,
    e.g. a logit) and whose fractions are ``k / n_units``; higher AUC is better, and AUCs are
    comparable only for the same ``ks``. Cost: ``B * len(ks)`` forward passes plus two per
    example, forward-only, in chunks of ``batch_size``.
    """
    check_positive_int(batch_size, "batch_size")
    if reset not in ("baseline", "zero"):
        raise ValueError(f"reset must be 'baseline' or 'zero', got {reset!r}")
    if reset == "zero" and baseline is not None:
        raise ValueError("baseline is only used with reset='baseline', not 'zero'")
    s = setup(model, x, baseline, target, additional_forward_args, forward_kwargs, output,
              integers=True)
    if s.k != 1:
        raise ValueError("neuron_ablation takes one baseline per example")
    name, module = resolve_layer(model, layer)
    b = s.b
    dev = s.x.device
    all_rows = torch.arange(b, device=dev)
    with model_guard(model), torch.inference_mode():
        act = _activation(s, name, module, s.x, all_rows)
        channels = _check_scores(scores, act)
        n_units = scores[0].numel()
        ks_t = _check_ks(ks, n_units).to(dev)
        reset_act = torch.zeros_like(act) if reset == "zero" else \
            _activation(s, name, module, s.baseline, all_rows)
        order = scores.to(dev).flatten(1).argsort(dim=1, descending=True, stable=True)
        rank = torch.empty_like(order).scatter_(
            1, order, torch.arange(n_units, device=dev).expand(b, -1).contiguous())
        unit_shape = act.shape[1:2] + (1,) * (act.dim() - 2) if channels else act.shape[1:]
        f_x = check_finite(s.target.select(s.call(s.x, all_rows), all_rows), "the model's output")
        rows = all_rows.repeat_interleave(len(ks_t))
        counts = ks_t.repeat(b)
        state: dict[str, Tensor] = {}
        out = []
        with tap_layers(s.call.model, [Tap(name, False, lambda a: torch.where(
                state["mask"], state["reset"], a))]) as (tap,):
            for i in range(0, len(rows), batch_size):
                r = rows[i:i + batch_size]
                state["mask"] = (rank[r] < counts[i:i + batch_size, None]).view(-1, *unit_shape)
                state["reset"] = reset_act[r]
                tap.reset()
                out.append(s.target.select(s.call(s.x[r], r), r))
                tap.check()
    changes = f_x[rows] - (torch.cat(out) if out else f_x[:0])
    check_finite(changes.view(b, len(ks_t)), "the model's output with units reset")
    return Curve.from_scores(ks_t.to(f_x.dtype) / n_units, changes.view(b, len(ks_t)))


def _activation(s: Setup, name: str, module: nn.Module, x: Tensor, rows: Tensor) -> Tensor:
    """The layer's output on ``x`` (rows ``rows`` of the batch); the forward stops there."""
    with tap_layers(s.call.model, [Tap(name)]) as (tap,), stop_when_tapped([tap]):
        with contextlib.suppress(StopForward):
            s.call(x, rows)
        return tap.check()


def _check_scores(scores: Tensor, act: Tensor) -> bool:
    """True if ``scores`` rank channels, False if single neurons; raise if neither fits."""
    scores = check_tensor(scores, "scores")
    if scores.shape == act.shape:
        return False
    if act.dim() > 2 and scores.shape == act.shape[:2]:
        return True
    hint = f" or {tuple(act.shape[:2])} (channels)" if act.dim() > 2 else ""
    raise ValueError(f"scores has shape {tuple(scores.shape)}, expected {tuple(act.shape)} "
                     f"(the layer's output){hint}")


def _check_ks(ks: Sequence[int] | None, n_units: int) -> Tensor:
    if ks is None:
        return torch.linspace(0, n_units, min(n_units, 20) + 1).round().long().unique()
    k = torch.as_tensor(ks)
    if k.dim() != 1 or len(k) == 0 or k.is_floating_point() or k.dtype == torch.bool:
        raise ValueError(f"ks must be a non-empty sequence of integers, got {ks!r}")
    if (k < 0).any() or (k > n_units).any() or (k.diff() <= 0).any():
        raise ValueError(f"ks must increase within [0, {n_units}] (the layer's units), got "
                         f"{k.tolist()}")
    return k.long()
