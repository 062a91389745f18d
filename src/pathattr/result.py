"""The result every attribution method returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeAlias

import torch
from torch import Tensor

#: One tensor, or a tuple with one per input or layer (a layer of several tensors: a tuple).
Attributions: TypeAlias = "Tensor | tuple[Attributions, ...]"


@dataclass
class Attribution:
    """Attributions plus the evidence of their error.

    attributions: same shape as what is attributed to (the input, or a layer's activation);
        for neuron conductance ``(n_neurons, *x.shape)``; a tuple with one tensor per input
        (or layer) when those were given as a tuple.
    delta: per example, ``attributions.sum() - (F(x) - F(x'))``: the completeness gap
        (quadrature error for path methods, summation-to-delta error for DeepLIFT).
        ``None`` for methods without a completeness property (plain gradients).
    alphas, weights: the path points used and their quadrature weights. A 1-D sorted tensor
        when every example shares them, else a list with one 1-D tensor per example.
    info: method-specific facts (gradient evaluations, whether a tolerance was met, ...).
    """

    attributions: Attributions
    delta: Tensor | None = None
    alphas: Tensor | list[Tensor] | None = None
    weights: Tensor | list[Tensor] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def _repr_html_(self) -> str:
        """Jupyter's view: shape, each example's gap, image maps (``viz.notebook``)."""
        from .viz.notebook import attribution_html

        return attribution_html(self)

    @property
    def tensor(self) -> Tensor:
        """The attributions as one tensor; ``TypeError`` when they are a tuple (one per input
        or layer output), which a caller then indexes itself."""
        a = self.attributions
        if not isinstance(a, Tensor):
            raise TypeError(f"this result has one attribution per input (a tuple of {len(a)}), "
                            "not one tensor: index .attributions instead")
        return a

    def neuron_totals(self, reduce: str = "channel") -> Tensor:
        """Sum attributions per channel (dim 1) for conv-shaped results.

        Returns ``(batch, channels)``; ``reduce="none"`` returns the attributions unchanged.
        """
        a = self.tensor
        if reduce == "none":
            return a
        if reduce != "channel":
            raise ValueError(f"reduce must be 'channel' or 'none', got {reduce!r}")
        if a.dim() <= 2:
            return a
        return a.flatten(2).sum(-1)

    def relative_delta(self, total: Tensor | None = None) -> Tensor:
        """|delta| / |F(x) - F(x')| per example (needs ``info['output_delta']``)."""
        if self.delta is None:
            raise ValueError("this result has no completeness gap (delta is None)")
        denom = self.info["output_delta"] if total is None else total
        return self.delta.abs() / denom.abs().clamp_min(torch.finfo(denom.dtype).tiny)
