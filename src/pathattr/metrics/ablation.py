"""Neuron ablation: reset a layer's top-ranked units and measure how far the target output moves.

A good importance score moves the output further with fewer units reset (Dhamdhere et al. 2018,
Shrikumar et al. 2018). Random scores are the control.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..forward import choose_output
from ..guard import model_guard
from ..layers import LayerSpec, StopForward, resolve_layer, stop_when_tapped, tap_layers
from ..targets import TargetSpec, resolve_target, select
from ..validate import check_eval_mode, check_positive_int, check_tensor
from .curve import Curve, baseline_like


def random_scores(shape: Sequence[int], generator: torch.Generator | None = None) -> Tensor:
    """Uniform random scores of ``shape``: the control ranking for ``neuron_ablation``."""
    return torch.rand(tuple(shape), generator=generator)


def neuron_ablation(model: nn.Module, x: Tensor, layer: LayerSpec, scores: Tensor,
                    target: TargetSpec = None, ks: Sequence[int] | None = None,
                    reset: str = "baseline", baseline: Tensor | None = None,
                    batch_size: int = 64) -> Curve:
    """Reset the ``k`` highest-scoring units of ``layer`` for each ``k`` in ``ks``.

    scores: ``(B, *S)`` for the layer's output of shape ``(B, *S)`` ranks single neurons;
    ``(B, C)`` for an output ``(B, C, ...)`` ranks whole channels.
    reset: ``"baseline"`` sets a unit to its activation at ``baseline`` (zeros by default; shape
    ``x.shape`` or ``x.shape[1:]``), ``"zero"`` to zero.
    ks: increasing unit counts in ``[0, n_units]``; default about 20 even steps from 0 to all.
    Returns a ``Curve`` whose scores are ``F(x) - F(x with the top k reset)`` (the target output,
    e.g. a logit) and whose fractions are ``k / n_units``; higher AUC is better, and AUCs are
    comparable only for the same ``ks``. Cost: ``B * len(ks)`` forward passes plus two per
    example, forward-only, in chunks of ``batch_size``.
    """
    x = check_tensor(x, "x")
    check_positive_int(batch_size, "batch_size")
    check_eval_mode(model)
    name, module = resolve_layer(model, layer)
    b = x.shape[0]
    with model_guard(model), torch.inference_mode():
        t = resolve_target(target, b, x.device)
        act = _activation(model, module, name, x)
        channels = _check_scores(scores, act)
        n_units = scores[0].numel()
        ks_t = _check_ks(ks, n_units).to(x.device)
        if reset == "zero":
            if baseline is not None:
                raise ValueError("baseline is only used with reset='baseline', not 'zero'")
            reset_act = torch.zeros_like(act)
        elif reset == "baseline":
            reset_act = _activation(model, module, name, baseline_like(x, baseline))
        else:
            raise ValueError(f"reset must be 'baseline' or 'zero', got {reset!r}")

        order = scores.to(x.device).flatten(1).argsort(dim=1, descending=True, stable=True)
        rank = torch.empty_like(order).scatter_(
            1, order, torch.arange(n_units, device=x.device).expand(b, -1).contiguous())
        unit_shape = act.shape[1:2] + (1,) * (act.dim() - 2) if channels else act.shape[1:]
        f_x = select(choose_output(model(x)), t)
        rows = torch.arange(b, device=x.device).repeat_interleave(len(ks_t))
        counts = ks_t.repeat(b)
        state: dict[str, Tensor] = {}
        out = []
        with tap_layers([(name, module, False, lambda a: torch.where(
                state["mask"], state["reset"], a))]) as (tap,):
            for i in range(0, len(rows), batch_size):
                r = rows[i:i + batch_size]
                state["mask"] = (rank[r] < counts[i:i + batch_size, None]).view(-1, *unit_shape)
                state["reset"] = reset_act[r]
                tap.reset()
                out.append(select(choose_output(model(x[r])), t, r))
                tap.check()
    changes = f_x[rows] - torch.cat(out)
    return Curve.from_scores(ks_t.to(x.dtype) / n_units, changes.view(b, len(ks_t)))


def _activation(model: nn.Module, module: nn.Module, name: str, x: Tensor) -> Tensor:
    """The layer's output on ``x``; the forward stops at the layer."""
    with tap_layers([(name, module, False, None)]) as (tap,), stop_when_tapped([tap]):
        with contextlib.suppress(StopForward):
            model(x)
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
