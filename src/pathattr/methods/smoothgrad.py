"""SmoothGrad (Smilkov et al. 2017) around any attribution method: statistics of its attributions
over noisy copies of the input,

    smoothgrad:    1/n sum_s A(x + e_s)
    smoothgrad_sq: 1/n sum_s A(x + e_s)^2
    vargrad:       1/n sum_s A(x + e_s)^2 - (1/n sum_s A(x + e_s))^2   (Adebayo et al. 2018)

with ``e_s ~ N(0, std^2)``: ``std = sigma (max x - min x)`` per example (PAIR's ``stdev_spread``),
or an absolute ``stdevs`` (Captum's). Tuple inputs get noise on each input.

Token ids cannot be noised: around a layer method (LayerIntegratedGradients, LayerConductance,
NeuronConductance) the noise goes to the layer's activation at the input end of the path
instead — the ``layer_noise`` those methods accept — with ``std`` measured on that activation,
per example.
"""

from __future__ import annotations

import inspect
from typing import Literal

import torch
from torch import Tensor

from ..quadrature import MAX_STEPS
from ..result import Attribution
from ..validate import check_number, check_positive_int, check_tensor

KINDS = ("smoothgrad", "smoothgrad_sq", "vargrad")


def _number(v: object, name: str) -> float:
    return check_number(v, name, 0)


def _map(fn, *trees):
    return tuple(fn(*parts) for parts in zip(*trees)) if isinstance(trees[0], tuple) \
        else fn(*trees)


class SmoothGrad:
    """Wrap ``method`` (anything with ``.attribute(x, ...) -> Attribution``).

    ``kind``: "smoothgrad" (mean), "smoothgrad_sq" (mean of squares) or "vargrad" (variance).
    Noise: ``sigma`` times each example's value range, or ``stdevs`` in input units (give one).
    """

    def __init__(self, method, samples: int = 25, sigma: float | None = None, seed: int = 0,
                 *, kind: Literal["smoothgrad", "smoothgrad_sq", "vargrad"] = "smoothgrad",
                 stdevs: float | None = None):
        if not callable(getattr(method, "attribute", None)):
            raise TypeError(f"method must have an attribute(x, ...) method, got "
                            f"{type(method).__name__}")
        check_positive_int(samples, "samples", maximum=MAX_STEPS)
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if sigma is not None and stdevs is not None:
            raise ValueError("give sigma (relative to each example's range) or stdevs "
                             "(absolute), not both")
        self.sigma = None if stdevs is not None else _number(0.15 if sigma is None else sigma,
                                                              "sigma")
        self.stdevs = None if stdevs is None else _number(stdevs, "stdevs")
        self.method, self.samples, self.seed, self.kind = method, samples, seed, kind

    def _noisy(self, t: Tensor, gen: torch.Generator) -> Tensor:
        if self.stdevs is not None:
            std = self.stdevs
        else:
            if t.numel() == 0:  # an empty batch
                return t
            flat = t.reshape(len(t), -1)
            assert self.sigma is not None  # one of sigma, stdevs is set (__init__)
            std = self.sigma * (flat.max(1).values - flat.min(1).values)
            std = std.reshape(-1, *([1] * (t.dim() - 1)))
        return t + std * torch.randn(t.shape, generator=gen, dtype=t.dtype).to(t.device)

    def attribute(self, x: Tensor | tuple[Tensor, ...], *args, **kwargs) -> Attribution:
        """Return the ``kind`` statistic of the attributions over ``samples`` noisy copies of
        ``x`` (for token ids: of the layer's activation, see the module docstring). Other
        arguments go to the wrapped method unchanged. ``delta`` is None (each copy has its own
        output change); ``info["deltas"]`` stacks the copies' deltas ``(samples, B)`` when the
        method reports them. Cost: ``samples`` calls of the wrapped method; the noise is seeded
        (``seed``).
        """
        xs = x if isinstance(x, tuple) else (x,)
        in_layer = any(isinstance(t, Tensor) and not t.is_floating_point() for t in xs)
        if in_layer and "layer_noise" not in inspect.signature(self.method.attribute).parameters:
            raise TypeError(f"x holds integer ids, which take no noise, and "
                            f"{type(self.method).__name__} cannot put it in a layer's space; "
                            f"wrap LayerIntegratedGradients, LayerConductance or "
                            f"NeuronConductance")
        if not in_layer:
            for i, t in enumerate(xs):
                check_tensor(t, f"x[{i}]" if isinstance(x, tuple) else "x")
        gen = torch.Generator(device="cpu").manual_seed(self.seed)
        total = squares = None
        deltas = []
        for _ in range(self.samples):
            if in_layer:
                r = self.method.attribute(x, *args, layer_noise=lambda e: self._noisy(e, gen),
                                          **kwargs)
            else:
                noisy = tuple(self._noisy(t, gen) for t in xs)
                r = self.method.attribute(noisy if isinstance(x, tuple) else noisy[0], *args,
                                          **kwargs)
            a = r.attributions
            total = a if total is None else _map(torch.add, total, a)
            sq = _map(torch.square, a)
            squares = sq if squares is None else _map(torch.add, squares, sq)
            deltas.append(r.delta)
        mean = _map(lambda t: t / self.samples, total)
        if self.kind == "smoothgrad":
            out = mean
        else:
            msq = _map(lambda t: t / self.samples, squares)
            out = msq if self.kind == "smoothgrad_sq" else _map(lambda q, m: q - m * m, msq, mean)
        info = {"samples": self.samples, "sigma": self.sigma, "stdevs": self.stdevs,
                "kind": self.kind, "noise_space": "layer" if in_layer else "input"}
        if all(d is not None for d in deltas):
            info["deltas"] = torch.stack(deltas)
        return Attribution(out, None, None, None, info)
