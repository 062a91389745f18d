"""DeepLIFT (Shrikumar et al. 2017) with the Rescale and RevealCancel rules, to the input and to
a layer's neurons.

    C_i = (x_i - x'_i) * M_i,    sum_i C_i = F(x) - F(x')   (summation-to-delta)

where the multiplier ``M`` is the chain rule with each nonlinearity's derivative replaced by
its DeepLIFT multiplier (``deeplift_rules``). One forward on ``x'`` that records what the rules
need, one forward on ``x`` and one backward on ``x`` alone.

Rules work per operation, not per module: a module called twice, functional activations
(``F.relu``, ``torch.sigmoid``) and residual additions are all seen, because a
``TorchFunctionMode`` intercepts every torch call during the forward. (A ``torch.fx`` trace
would also see functional calls, but fails on data-dependent Python and needs a traceable
model; the mode works on whatever the model's Python runs.)

RevealCancel applies at a nonlinearity whose input comes straight from ``Linear``/``Conv1d``/
``Conv2d``/``Conv3d`` (optionally through eval ``BatchNorm``): there the positive and negative
terms of the layer get separate multipliers. Every other nonlinearity uses Rescale;
``info["rules"]`` counts how often each rule was applied.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor, nn

from ..baselines import BaselineSpec
from ..engine import guarded
from ..layers import LayerSpec, resolve_layer, tap_layers
from ..result import Attribution
from ..targets import TargetSpec, select
from ._setup import Setup, setup
from .deeplift_rules import DeepLiftMode

if TYPE_CHECKING:
    from ..layers import _Tap

Rule = Literal["rescale", "revealcancel"]
RULES = ("rescale", "revealcancel")


def _check(model: object, rule: str) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"DeepLIFT needs the model as an nn.Module, got {type(model).__name__}")
    if rule not in RULES:
        raise ValueError(f"rule must be one of {', '.join(RULES)}, got {rule!r}")


def _forward(model: nn.Module, s: Setup, mode: DeepLiftMode, x: Tensor, x_ref: Tensor,
             tap: _Tap | None = None) -> tuple[Tensor, Tensor, Tensor | None]:
    """The two runs every DeepLIFT call makes: the target at the inputs (differentiable) and at
    the references (recording, detached), each ``(n,)``, and the tapped layer's activation on
    the reference run (detached; None without a tap)."""
    with mode.reference():
        out_ref = select(model(x_ref), s.target)
    act_ref = None
    if tap is not None:
        act_ref = tap.check().detach()
        tap.reset()
    with mode.inputs():
        out = select(model(x), s.target)
    mode.check_consumed()
    return out, out_ref.detach(), act_ref


def _result(s: Setup, contributions: Tensor, out: Tensor, out_ref: Tensor, rule: str,
            mode: DeepLiftMode, **info) -> Attribution:
    """Average over baselines; delta = sum of contributions - (F(x) - F(x'))."""
    attr = s.mean(contributions)
    out_delta = s.mean(out.detach() - out_ref)
    delta = attr.flatten(1).sum(1) - out_delta
    return Attribution(attr, delta, info={"rule": rule, "rules": dict(mode.counts),
                                          "output_delta": out_delta, **info})


class DeepLift:
    """DeepLIFT contributions of the input features.

    ``rule``: "rescale" or "revealcancel". ``allow_gradient_fallback``: use the plain gradient
    (with a warning) through operations that have no DeepLIFT rule, instead of raising
    ``NoDeepLiftRule``. Several baselines (``baselines.Several``) give DeepLIFT-SHAP: the
    contributions averaged over the baselines.
    """

    def __init__(self, model: nn.Module, rule: Rule = "rescale",
                 allow_gradient_fallback: bool = False):
        _check(model, rule)
        self.model, self.rule, self.fallback = model, rule, allow_gradient_fallback

    def attribute(self, x: Tensor, baselines: BaselineSpec = None,
                  target: TargetSpec = None) -> Attribution:
        """Return contributions (shape of ``x``) with ``delta`` per example.

        Cost: two forwards and one backward on ``K B`` rows (K baselines, B examples), plus a
        few elementwise passes per nonlinearity (RevealCancel: one extra linear map forward
        and backward at each site).
        """
        s = setup(self.model, x, baselines, target)
        mode = DeepLiftMode(len(s.x), self.rule, self.fallback)
        with guarded(self.model), torch.enable_grad():
            inputs = s.x.detach().requires_grad_(True)
            out, out_ref, _ = _forward(self.model, s, mode, inputs,
                                       s.baseline.detach().requires_grad_(True))
            (grad,) = torch.autograd.grad(out.sum(), inputs)
        return _result(s, (s.x - s.baseline) * grad, out, out_ref, self.rule, mode)


class LayerDeepLift:
    """DeepLIFT contributions of a layer's neurons (its output, or its input).

    The layer's activations are treated as the inputs of the network above it, so no graph is
    built below the layer; under RevealCancel a nonlinearity fed by a linear layer *below* the
    tapped layer uses Rescale (its terms are not visible).
    """

    def __init__(self, model: nn.Module, layer: LayerSpec, rule: Rule = "rescale",
                 allow_gradient_fallback: bool = False):
        _check(model, rule)
        resolve_layer(model, layer)
        self.model, self.layer, self.rule = model, layer, rule
        self.fallback = allow_gradient_fallback

    def attribute(self, x: Tensor, baselines: BaselineSpec = None, target: TargetSpec = None,
                  attribute_to_layer_input: bool = False) -> Attribution:
        """Return contributions shaped like the layer's activation per example, with ``delta``.

        Raises if the layer runs zero or several times in one forward. Cost: two forwards on
        ``K B`` rows (K baselines, B examples) and one backward down to the layer.
        """
        s = setup(self.model, x, baselines, target)
        name, module = resolve_layer(self.model, self.layer)
        mode = DeepLiftMode(len(s.x), self.rule, self.fallback)

        def cut(t: Tensor) -> Tensor:
            if not isinstance(t, Tensor) or not t.is_floating_point():
                raise TypeError(f"layer {name!r} activation is not a floating-point tensor")
            return t.detach().requires_grad_(True)

        with guarded(self.model), torch.enable_grad(), \
                tap_layers([(name, module, attribute_to_layer_input, cut)]) as (tap,):
            out, out_ref, act_ref = _forward(self.model, s, mode, s.x, s.baseline, tap)
            act = tap.check()
            (grad,) = torch.autograd.grad(out.sum(), act, allow_unused=True,
                                          materialize_grads=True)
        return _result(s, (act.detach() - act_ref) * grad, out, out_ref, self.rule, mode,
                       layer=name)
