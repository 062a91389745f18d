"""Plain gradient methods: Saliency |dF/dx| and Input x Gradient."""

from __future__ import annotations

from typing import Literal

import torch

from ..baselines import BaselineSpec
from ..call import Explainer, Inputs, Setup
from ..engine import guarded
from ..forward import OutputSpec
from ..integrate import Integrator
from ..result import Attribution
from ..targets import TargetSpec
from .integrated_gradients import IGIntegral


def _gradient(method: Explainer, x: Inputs, baselines, target: TargetSpec, batch_size,
              forward: tuple) -> tuple[Setup, torch.Tensor]:
    s = method.prepare(x, baselines, target, *forward)
    with guarded(method.model):
        engine = s.engine(batch_size)
        rows = torch.arange(len(s.x), device=s.x.device)
        ones = torch.ones(len(s.x), dtype=s.x.dtype, device=s.x.device)
        grads = [ch.grads[0] for ch in engine.gradients(rows, ones)]
    return s, torch.cat(grads) if grads else torch.zeros_like(s.x)


class Saliency(Explainer):
    """The gradient of the target at the input (absolute value by default)."""

    def attribute(self, x: Inputs, baselines: None = None, target: TargetSpec = None, *,
                  abs: bool = True, batch_size: int | Literal["auto"] = "auto",
                  additional_forward_args: tuple | None = None,
                  forward_kwargs: dict | None = None, output: OutputSpec = None
                  ) -> Attribution:
        """Return ``|dF/dx|`` (or the signed gradient) in the structure of ``x``; ``baselines``
        must be None (a gradient has no reference). Cost: one forward+backward."""
        if baselines is not None:
            raise TypeError("Saliency takes no baselines (pass target= by keyword)")
        s, g = _gradient(self, x, None, target, batch_size,
                         (additional_forward_args, forward_kwargs, output))
        return Attribution(s.structure(g.abs() if abs else g))


class InputXGradient(Explainer):
    """``(x - x') * dF/dx``: with the default zero baseline, Input x Gradient."""

    def attribute(self, x: Inputs, baselines: BaselineSpec | tuple = None,
                  target: TargetSpec = None, *, batch_size: int | Literal["auto"] = "auto",
                  additional_forward_args: tuple | None = None,
                  forward_kwargs: dict | None = None, output: OutputSpec = None
                  ) -> Attribution:
        """Return ``(x - x') * dF/dx`` in the structure of ``x``. Cost: one forward+backward."""
        s, g = _gradient(self, x, baselines, target, batch_size,
                         (additional_forward_args, forward_kwargs, output))
        return Attribution(s.structure(s.mean((s.x - s.baseline) * g)))


class InputIntegral(IGIntegral):
    """Input x Gradient as an integrator: IG's sum on the single node ``a = 1`` of weight 1,
    ``g(x) (x - x')`` (with a zero baseline, ``InputXGradient``). It takes no option."""

    OPTIONS = ()

    @classmethod
    def of(cls, options: dict) -> Integrator:
        integrator = cls()
        integrator.nodes = ("riemann_right", 1)
        return integrator

    @classmethod
    def accepts(cls) -> tuple[str, ...]:
        return ()
