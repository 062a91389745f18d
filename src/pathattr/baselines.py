"""Baselines: what "absence" of a feature means. Every spec becomes a ``(K, B, *S)`` tensor.

K > 1 means several baselines per example whose attributions are averaged (expected
gradients, DeepLIFT-SHAP); completeness then holds against the mean of ``F(x) - F(x'_k)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .validate import check_tensor


def gaussian_blur(x: Tensor, sigma: float, kernel_size: int | None = None) -> Tensor:
    """Blur each channel of ``(B, C, H, W)`` images with a Gaussian (reflect padding).

    ``kernel_size`` defaults to ``2 * ceil(3 sigma) + 1``, capped per axis to what reflect
    padding allows (an axis of one pixel, e.g. a signal stored as a 1-pixel-high image, is left
    as it is). Cost: two separable 1-D convolutions.
    """
    if x.dim() != 4:
        raise ValueError(f"blur needs images of shape (B, C, H, W), got {tuple(x.shape)}")
    if sigma <= 0:
        return x.clone()
    if kernel_size is None:
        kernel_size = 2 * int(torch.tensor(3.0 * sigma).ceil().item()) + 1
    c = x.shape[1]
    y = x
    for axis, size in ((-1, x.shape[-1]), (-2, x.shape[-2])):
        half = min(kernel_size, 2 * (size - 1) + 1) // 2
        if half == 0:
            continue
        t = torch.arange(-half, half + 1, dtype=x.dtype, device=x.device)
        k = torch.exp(-0.5 * (t / sigma) ** 2)
        k = k / k.sum()
        pad = (half, half, 0, 0) if axis == -1 else (0, 0, half, half)
        shape = (c, 1, 1, -1) if axis == -1 else (c, 1, -1, 1)
        y = torch.nn.functional.conv2d(torch.nn.functional.pad(y, pad, mode="reflect"),
                                       k.view(1, 1, *shape[2:]).expand(*shape), groups=c)
    return y


@dataclass(frozen=True)
class Blur:
    """The input blurred with a Gaussian of standard deviation ``sigma`` pixels."""

    sigma: float = 10.0

    def make(self, x: Tensor) -> Tensor:
        return gaussian_blur(x, self.sigma)[None]


@dataclass(frozen=True)
class Uniform:
    """``samples`` baselines drawn uniformly from ``[low, high]`` per feature."""

    low: float = 0.0
    high: float = 1.0
    samples: int = 1
    seed: int = 0

    def make(self, x: Tensor) -> Tensor:
        g = torch.Generator(device="cpu").manual_seed(self.seed)
        u = torch.rand((self.samples, *x.shape), generator=g, dtype=x.dtype)
        return (self.low + (self.high - self.low) * u).to(x.device)


@dataclass(frozen=True)
class Gaussian:
    """``samples`` baselines ``x + sigma * N(0, 1)``."""

    sigma: float = 0.1
    samples: int = 1
    seed: int = 0

    def make(self, x: Tensor) -> Tensor:
        g = torch.Generator(device="cpu").manual_seed(self.seed)
        n = torch.randn((self.samples, *x.shape), generator=g, dtype=x.dtype)
        return x[None] + self.sigma * n.to(x.device)


@dataclass(frozen=True)
class Several:
    """Several given baselines, ``(K, *S)`` shared by all examples or ``(K, B, *S)``."""

    baselines: Tensor

    def make(self, x: Tensor) -> Tensor:
        b = check_tensor(self.baselines, "baselines").to(x.device, x.dtype)
        if b.shape[1:] == x.shape[1:]:
            return b[:, None].expand(-1, *x.shape)
        if b.shape[1:] == x.shape:
            return b
        shared, each = ", ".join(map(str, x.shape[1:])), ", ".join(map(str, x.shape))
        raise ValueError(f"Several baselines have shape {tuple(b.shape)}, expected "
                         f"(K, {shared}) or (K, {each})")


BaselineSpec = None | float | int | str | Tensor | Blur | Uniform | Gaussian | Several
_NAMED = {"zero": lambda: None, "blur": Blur, "uniform": Uniform, "gaussian": Gaussian}


def make_baselines(x: Tensor, spec: BaselineSpec) -> Tensor:
    """Turn a baseline spec into a ``(K, B, *S)`` tensor on ``x``'s device and dtype.

    None or "zero": zeros. A number: that constant. A tensor of ``x``'s shape: one baseline per
    example; of shape ``x.shape[1:]`` or with batch 1: shared by all examples. A name ("blur",
    "uniform", "gaussian") or a spec object (Blur, Uniform, Gaussian, Several).
    """
    if not x.is_floating_point():
        return _integer_baselines(x, spec)
    out = _float_baselines(x, spec)
    if not torch.isfinite(out).all():
        raise ValueError("baselines contain NaN or inf values")
    return out


def _integer_baselines(x: Tensor, spec: BaselineSpec) -> Tensor:
    """Baselines of integer inputs (token ids): ids too, e.g. a pad or mask id."""
    if spec is None:
        return torch.zeros_like(x)[None]
    if isinstance(spec, int) and not isinstance(spec, bool):
        return torch.full_like(x, spec)[None]
    if isinstance(spec, Tensor) and not spec.is_floating_point() and spec.dtype != torch.bool:
        b = spec.to(x.device, x.dtype)
        if b.shape == x.shape:
            return b[None]
        if b.shape == x.shape[1:] or (b.dim() == x.dim() and b.shape[0] == 1):
            return b.reshape(x.shape[1:]).expand_as(x)[None]
        raise ValueError(f"baselines has shape {tuple(b.shape)}, expected {tuple(x.shape)} "
                         f"or {tuple(x.shape[1:])}")
    raise TypeError(f"the input is integer ({x.dtype}, e.g. token ids), so its baselines must be "
                    f"ids too: an int (a pad or mask id) or an integer tensor; got {spec!r}")


def _float_baselines(x: Tensor, spec: BaselineSpec) -> Tensor:
    if isinstance(spec, str):
        if spec not in _NAMED:
            raise ValueError(f"baselines {spec!r} unknown; expected one of {', '.join(_NAMED)}")
        spec = _NAMED[spec]()
    if spec is None:
        return torch.zeros_like(x)[None]
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return torch.full_like(x, float(spec))[None]
    if isinstance(spec, Tensor):
        b = check_tensor(spec, "baselines").to(x.device, x.dtype)
        if b.shape == x.shape:
            return b[None]
        if b.shape == x.shape[1:] or (b.dim() == x.dim() and b.shape[0] == 1
                                        and b.shape[1:] == x.shape[1:]):
            return b.reshape(x.shape[1:]).expand_as(x)[None]
        raise ValueError(f"baselines has shape {tuple(b.shape)}, expected {tuple(x.shape)} "
                         f"(one per example) or {tuple(x.shape[1:])} (shared); for several "
                         f"baselines per example use pathattr.baselines.Several")
    make = getattr(spec, "make", None)
    if callable(make):
        return check_tensor(make(x), "baselines")
    raise TypeError(f"baselines must be None, a number, a tensor, a name or a baseline spec, "
                    f"got {type(spec).__name__}")
