"""Checks of user input that fail early with a message naming the argument."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
            nn.FeatureAlphaDropout)


def check_tensor(t: object, name: str) -> Tensor:
    """Return ``t`` if it is a floating tensor with only finite values, else raise."""
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor (attribution needs gradients), got "
            f"{t.dtype}; convert it with .float() (token ids: attribute to the embedding "
            f"layer with LayerIntegratedGradients)"
        )
    if t.dim() == 0:
        raise ValueError(f"{name} must have a batch dimension, got a scalar")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or inf values")
    return t


def check_same_shape(a: Tensor, b: Tensor, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name_b} has shape {tuple(b.shape)}, expected {tuple(a.shape)} "
                         f"(the shape of {name_a})")


def first_nonfinite(values: Tensor) -> int | None:
    """The first row of ``values`` holding a NaN or inf, or None."""
    if values.numel() == 0:
        return None
    bad = ~torch.isfinite(values.reshape(len(values), -1)).all(1)
    return int(bad.nonzero()[0, 0]) if bool(bad.any()) else None


def check_finite(values: Tensor, what: str) -> Tensor:
    """Return ``values`` (one row per example), or raise ``NonFiniteOutput`` naming the first
    example where ``what`` is NaN or inf: no method or metric returns NaN silently."""
    from .errors import NonFiniteOutput

    i = first_nonfinite(values.detach())
    if i is not None:
        raise NonFiniteOutput(f"{what} is not finite for example {i}: check the model, its "
                              f"dtype and the inputs")
    return values


def check_eval_mode(model: object) -> None:
    """Refuse a model in training mode whose output is random (dropout) or batch-coupled."""
    if not isinstance(model, nn.Module) or not model.training:
        return
    for name, m in model.named_modules():
        if m.training and isinstance(m, _DROPOUT) and m.p > 0:
            raise ValueError(
                f"model is in training mode with dropout ({name or 'model'}: {type(m).__name__}"
                f"(p={m.p})), so its output is random; call model.eval() first"
            )
        if m.training and isinstance(m, nn.modules.batchnorm._BatchNorm):
            raise ValueError(
                f"model is in training mode with batch norm ({name}), so each example's "
                f"output depends on the batch and attribution would update running stats; "
                f"call model.eval() first"
            )


def check_repeatable(model: object, forward: Callable[[], Tensor]) -> None:
    """Refuse a model with a module in training mode whose output changes between two
    identical ``forward()`` calls: a random op is active (``F.dropout(h, p, self.training)``,
    which no module check can see), and attributions would differ on every call. Models in
    training mode that are deterministic are accepted. The global RNG state is restored.
    Cost: two forward passes, only when some module is in training mode."""
    if not isinstance(model, nn.Module):
        return
    training = [name or "model" for name, m in model.named_modules() if m.training]
    if not training:
        return
    cuda = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
    with torch.no_grad(), torch.random.fork_rng(devices=cuda):
        first, second = forward(), forward()
    same = (first == second) | (first.isnan() & second.isnan())  # NaN is the finite check's
    if first.shape != second.shape or not bool(same.all()):
        gap = float((first.double() - second.double()).abs().max())
        raise ValueError(
            f"model gives different outputs for the same input (by up to {gap:.3g}) and is in "
            f"training mode ({', '.join(training[:3])}{', ...' if len(training) > 3 else ''}):"
            f" dropout or another random op is active; call model.eval() first")


def check_positive_int(v: object, name: str, minimum: int = 1, maximum: int | None = None
                       ) -> int:
    """Return ``v`` if it is an int in ``[minimum, maximum]``, else raise naming ``name``."""
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {v!r}")
    if maximum is not None and v > maximum:
        raise ValueError(f"{name} must be at most {maximum} (got {v}): each one costs a forward "
                         f"and a backward pass")
    return v


def check_number(v: object, name: str, low: float | None = None, high: float | None = None,
                 *, low_open: bool = False, high_open: bool = False) -> float:
    """Return ``v`` as a float if it is a finite real number within the bounds (``low`` /
    ``high``, excluded with ``low_open`` / ``high_open``), else raise ``ValueError`` naming
    ``name`` and the range (``"tol must be a number > 0, got 0"``). Booleans are refused."""
    f = float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan
    ok = math.isfinite(f)
    if ok and low is not None:
        ok = f > low if low_open else f >= low
    if ok and high is not None:
        ok = f < high if high_open else f <= high
    if not ok:
        if low is not None and high is not None:
            span = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        elif low is not None:
            span = f"{'>' if low_open else '>='} {low:g}"
        elif high is not None:
            span = f"{'<' if high_open else '<='} {high:g}"
        else:
            span = "(finite)"
        raise ValueError(f"{name} must be a number {span}, got {v!r}")
    return f


def check_flag(v: object, name: str) -> bool:
    """Return ``v`` if it is a bool, else raise naming ``name`` (``0``/``"no"`` are not)."""
    if not isinstance(v, bool):
        raise TypeError(f"{name} must be True or False, got {v!r}")
    return v


def check_steps(steps: object, name: str = "steps") -> int:
    """``check_positive_int`` with the bound every path method shares, ``MAX_STEPS``."""
    from .quadrature import MAX_STEPS

    return check_positive_int(steps, name, maximum=MAX_STEPS)


def check_out_dir(path: str | Path, name: str = "--out") -> None:
    """Refuse an output directory that is, or lies under, an existing file (``SettingError``
    naming ``name``); it is created later."""
    from .errors import SettingError

    path = Path(path)
    for p in (path, *path.parents):
        if p.exists() and not p.is_dir():
            raise SettingError(f"{name}: {str(path)!r} is not a directory "
                               f"({str(p)!r} is a file)")
