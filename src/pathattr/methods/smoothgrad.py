"""SmoothGrad (Smilkov et al. 2017) around any attribution method: the mean of its attributions
over noisy copies of the input,

    SG(x) = 1/n sum_s A(x + e_s),   e_s ~ N(0, (sigma (max x - min x))^2) per example.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..result import Attribution
from ..validate import check_positive_int, check_tensor


class SmoothGrad:
    """Wrap ``method`` (anything with ``.attribute(x, ...) -> Attribution``)."""

    def __init__(self, method, samples: int = 25, sigma: float = 0.15, seed: int = 0):
        if not callable(getattr(method, "attribute", None)):
            raise TypeError(f"method must have an attribute(x, ...) method, got "
                            f"{type(method).__name__}")
        check_positive_int(samples, "samples")
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not sigma >= 0:
            raise ValueError(f"sigma must be a number >= 0, got {sigma!r}")
        self.method, self.samples, self.sigma, self.seed = method, samples, float(sigma), seed

    def attribute(self, x: Tensor, **kwargs) -> Attribution:
        """Return the mean attribution over ``samples`` noisy copies of ``x``; the noise's
        standard deviation is ``sigma`` times each example's value range (PAIR's
        ``stdev_spread``). Keyword arguments go to the wrapped method unchanged.
        ``delta`` is None (each copy has its own output change); ``info["deltas"]`` stacks the
        copies' deltas ``(samples, B)`` when the method reports them.
        Cost: ``samples`` calls of the wrapped method; the noise is seeded (``seed``).
        """
        check_tensor(x, "x")
        flat = x.flatten(1)
        std = self.sigma * (flat.max(1).values - flat.min(1).values)
        std = std.reshape(-1, *([1] * (x.dim() - 1)))
        gen = torch.Generator(device="cpu").manual_seed(self.seed)
        total, deltas = None, []
        for _ in range(self.samples):
            noise = torch.randn(x.shape, generator=gen, dtype=x.dtype).to(x.device)
            r = self.method.attribute(x + std * noise, **kwargs)
            total = r.attributions if total is None else total + r.attributions
            deltas.append(r.delta)
        info = {"samples": self.samples, "sigma": self.sigma}
        if all(d is not None for d in deltas):
            info["deltas"] = torch.stack(deltas)
        return Attribution(total / self.samples, None, None, None, info)
