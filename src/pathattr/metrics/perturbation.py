"""Insertion and deletion curves (Petsiuk et al. 2018, RISE): how fast the predicted class's
probability falls as the most important pixels are removed, or rises as they are restored.

Images ``(B, C, H, W)`` go by pixels (RISE's protocol, blur substrate for insertion). Any
other input — token ids (replaced by a pad or mask id, attention masks passed with
``forward_kwargs``), tabular rows, 1-D signals — or any input with a ``feature_mask`` goes by
*features*: each element of ``x`` (or each group of ``feature_mask``), ranked by
``|attribution|`` (summed over trailing dimensions the attributions have beyond ``x``, e.g. an
embedding, and over a group's elements).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..baselines import gaussian_blur
from ..call import setup
from ..engine import chunk_size, guarded, is_conv
from ..errors import NonFiniteOutput
from ..forward import OutputSpec, choose_output
from ..guard import model_guard
from ..targets import TargetSpec, resolve_target, select
from ..validate import check_eval_mode, check_positive_int, check_tensor
from .curve import Curve, baseline_like

#: RISE's insertion substrate: an 11x11 Gaussian blur with sigma 5 pixels.
BLUR_SIGMA = 5.0
BLUR_KERNEL = 11


def deletion(model: nn.Module, x: Tensor, attributions: Tensor, target: TargetSpec = None,
             pixels_per_step: int = 224, substrate: str = "baseline",
             baseline: Tensor | int | None = None, batch_size: int | str = "auto", *,
             feature_mask: Tensor | None = None, features_per_step: int | None = None,
             additional_forward_args: tuple | None = None, forward_kwargs: dict | None = None,
             output: OutputSpec = None, ranking: str = "attribution", seed: int = 0) -> Curve:
    """Replace the most important pixels (or features) of ``x`` step by step with the
    substrate. Returns a ``Curve`` of the softmax probability of the target against the
    fraction replaced; lower AUC is better. See ``insertion`` for the arguments and cost.
    """
    if _by_features(x, feature_mask, additional_forward_args, forward_kwargs, output):
        return _feature_curve(model, x, attributions, target, baseline, feature_mask,
                              features_per_step, additional_forward_args, forward_kwargs,
                              output, batch_size, True, ranking, seed)
    return _curve(model, x, attributions, target, pixels_per_step, substrate, baseline,
                  batch_size, True, ranking, seed)


def insertion(model: nn.Module, x: Tensor, attributions: Tensor, target: TargetSpec = None,
              pixels_per_step: int = 224, substrate: str = "blur",
              baseline: Tensor | int | None = None, batch_size: int | str = "auto", *,
              feature_mask: Tensor | None = None, features_per_step: int | None = None,
              additional_forward_args: tuple | None = None, forward_kwargs: dict | None = None,
              output: OutputSpec = None, ranking: str = "attribution", seed: int = 0) -> Curve:
    """Start from the substrate and restore the most important pixels of ``x`` step by step.

    model: returns logits ``(B, classes)``; it is evaluated forward-only.
    x: images ``(B, C, H, W)``. attributions: ``x.shape``, ``(B, 1, H, W)`` or ``(B, H, W)``;
    pixels are ranked by ``|sum over channels|`` (ties by position).
    target: class per example; None means the model's prediction on ``x``.
    substrate: ``"blur"`` (11x11 Gaussian, sigma 5, reflect padding) or ``"baseline"``
    (``baseline``, zero by default; shape ``x.shape`` or ``x.shape[1:]``).
    Returns a ``Curve`` with ``ceil(H W / pixels_per_step) + 1`` points; higher AUC is better.
    Cost: that many forward passes per image, in chunks of ``batch_size`` images.

    Other inputs, or a ``feature_mask`` (integer group ids broadcastable to ``x``), go by
    features (module docstring): ``features_per_step`` (default: a twentieth of the
    features), the substrate is ``baseline`` (zeros, or for token ids an int such as the pad
    id), and ``additional_forward_args`` / ``forward_kwargs`` (an attention mask) / ``output``
    are passed as to the methods. ``target`` may then be anything the methods take; the score
    is the softmax of the output over its last dimension at the target.

    ``ranking``: "attribution" (most important first), or the controls every comparison
    should show beside it: "inverse" (least important first) and "random" (seeded by
    ``seed``; the attributions' shape is still checked).
    """
    if _by_features(x, feature_mask, additional_forward_args, forward_kwargs, output):
        return _feature_curve(model, x, attributions, target, baseline, feature_mask,
                              features_per_step, additional_forward_args, forward_kwargs,
                              output, batch_size, False, ranking, seed)
    return _curve(model, x, attributions, target, pixels_per_step, substrate, baseline,
                  batch_size, False, ranking, seed)


def _by_features(x: object, feature_mask, additional_forward_args, forward_kwargs,
                 output) -> bool:
    image = isinstance(x, Tensor) and x.dim() == 4 and x.is_floating_point()
    return not image or feature_mask is not None or bool(additional_forward_args) \
        or bool(forward_kwargs) or output is not None


def _ranked(importance: Tensor, ranking: str, seed: int) -> Tensor:
    """``importance`` ``(B, n)`` as ranked: itself, reversed, or seeded noise."""
    if ranking == "attribution":
        return importance
    if ranking == "inverse":
        return -importance
    if ranking == "random":
        g = torch.Generator(device=importance.device).manual_seed(seed)
        return torch.rand(importance.shape, generator=g, device=importance.device,
                          dtype=importance.dtype)
    raise ValueError(f"ranking must be 'attribution', 'inverse' or 'random', got {ranking!r}")


def _feature_curve(model, x, attributions, target, baseline, feature_mask, features_per_step,
                   additional_forward_args, forward_kwargs, output, batch_size,
                   delete: bool, ranking: str, seed: int) -> Curve:
    if isinstance(x, Tensor) and x.dim() == 4 and not x.is_floating_point():
        raise TypeError(f"x holds integer images ({x.dtype}): pass them as floats in the "
                        f"model's input space (its preprocessing); integer x is read as "
                        f"token ids")
    s = setup(model, x, None, target, additional_forward_args, forward_kwargs, output,
              integers=True)
    x = s.x
    a = check_tensor(attributions, "attributions")
    if a.shape[:x.dim()] != x.shape:
        raise ValueError(f"attributions has shape {tuple(a.shape)}, expected {tuple(x.shape)}"
                         f" (the shape of x), optionally with trailing dimensions (an embedding)")
    a = a.reshape(*x.shape, -1).sum(-1).to(torch.float64)
    b = x.shape[0]
    if feature_mask is None:
        groups = torch.arange(x[0].numel(), device=x.device).expand(b, -1)
    else:
        m = torch.as_tensor(feature_mask, device=x.device)
        if m.is_floating_point() or m.dtype == torch.bool:
            raise TypeError(f"feature_mask must hold integer group ids, got {m.dtype}")
        try:
            m = m.expand_as(x) if m.dim() == x.dim() else m.expand(x.shape)
        except RuntimeError:
            raise ValueError(f"feature_mask has shape {tuple(m.shape)}, which does not "
                             f"broadcast to x's {tuple(x.shape)}") from None
        groups = torch.stack([torch.unique(r, return_inverse=True)[1] for r in m.flatten(1)])
    n_feat = int(groups.max()) + 1 if groups.numel() else 0
    scores = _ranked(torch.zeros(b, n_feat, dtype=torch.float64, device=x.device).scatter_add_(
        1, groups, a.flatten(1)).abs(), ranking, seed)
    per_step = max(1, -(-n_feat // 20)) if features_per_step is None else features_per_step
    check_positive_int(per_step, "features_per_step")
    sub = baseline_like(x, baseline)
    start, end = (x, sub) if delete else (sub, x)
    with guarded(model), torch.inference_mode():
        t = s.target
        if target is None:
            t = resolve_target(s.call(x).argmax(-1), b, x.device)

        def evaluate(r: Tensor, changed: Tensor) -> Tensor:
            changed = changed.gather(1, groups[r]).view(-1, *x.shape[1:])  # features -> elements
            return t.select(s.call(torch.where(changed, end[r], start[r]), r).softmax(-1), r)

        counts, probs = _sweep(scores, per_step, lambda n: chunk_size(s.call, x, batch_size, n),
                               evaluate, "features", delete)
    return Curve.from_scores(counts.to(torch.float64) / max(n_feat, 1), probs.double())


def _sweep(importance: Tensor, per_step: int, batch: Callable[[int], int],
           evaluate: Callable[[Tensor, Tensor], Tensor], unit: str, delete: bool
           ) -> tuple[Tensor, Tensor]:
    """The curve of each row of ``importance`` ``(B, n)``: its features changed in order of
    importance, ``per_step`` more at each step. ``evaluate(rows, changed)`` scores ``rows``
    with ``changed`` ``(len(rows), n)`` marking the features changed so far, in chunks of
    ``batch(number of points)`` rows. Returns the counts changed ``(steps + 1,)`` and the
    scores ``(B, steps + 1)``. Raises ``NonFiniteOutput`` naming the example and the count."""
    b, n = importance.shape
    dev = importance.device
    n_steps = -(-n // per_step)
    counts = (torch.arange(n_steps + 1, device=dev) * per_step).clamp_max(n)
    order = importance.argsort(dim=1, descending=True, stable=True)
    rank = torch.empty_like(order).scatter_(
        1, order, torch.arange(n, device=dev).expand(b, -1).contiguous())
    rows = torch.arange(b, device=dev).repeat_interleave(n_steps + 1)
    steps = counts.repeat(b)
    bs = batch(len(rows))
    scores = []
    for i in range(0, len(rows), bs):
        r = rows[i:i + bs]
        p = evaluate(r, rank[r] < steps[i:i + bs, None])
        bad = ~torch.isfinite(p)
        if bad.any():
            j = int(bad.nonzero()[0, 0])
            raise NonFiniteOutput(
                f"the model's output is NaN or inf for example {int(r[j])} with "
                f"{int(steps[i + j])} of {n} {unit} {'deleted' if delete else 'inserted'}: "
                f"no score is defined there")
        scores.append(p)
    if not scores:  # an empty batch: an empty curve per example, no forward
        return counts, importance.new_zeros((0, n_steps + 1))
    return counts, torch.cat(scores).view(b, n_steps + 1)


def _saliency(attributions: Tensor, x: Tensor) -> Tensor:
    """Per-pixel importance ``(B, H*W)``."""
    a = check_tensor(attributions, "attributions")
    b, _, h, w = x.shape
    if a.shape == (b, h, w):
        return a.abs().flatten(1)
    if a.dim() == 4 and a.shape[0] == b and a.shape[1] in (1, x.shape[1]) and a.shape[2:] == (h, w):
        return a.sum(1).abs().flatten(1)
    raise ValueError(f"attributions has shape {tuple(a.shape)}, expected {tuple(x.shape)}, "
                     f"{(b, 1, h, w)} or {(b, h, w)} for x of shape {tuple(x.shape)}")


def _substrate(x: Tensor, substrate: str, baseline: Tensor | None) -> Tensor:
    if substrate == "blur":
        if baseline is not None:
            raise ValueError("baseline is only used with substrate='baseline', not 'blur'")
        return gaussian_blur(x, BLUR_SIGMA, BLUR_KERNEL)
    if substrate != "baseline":
        raise ValueError(f"substrate must be 'baseline' or 'blur', got {substrate!r}")
    return baseline_like(x, baseline)


def _curve(model, x, attributions, target, pixels_per_step, substrate, baseline, batch_size,
           delete: bool, ranking: str, seed: int) -> Curve:
    x = check_tensor(x, "x")
    if x.dim() != 4:
        raise ValueError(f"x must be images of shape (B, C, H, W), got {tuple(x.shape)}")
    check_positive_int(pixels_per_step, "pixels_per_step")
    check_eval_mode(model)
    saliency = _ranked(_saliency(attributions, x).to(x.device), ranking, seed)
    sub = _substrate(x, substrate, baseline)
    start, end = (x, sub) if delete else (sub, x)
    b, _, h, w = x.shape
    channels_last = is_conv(model, x)
    with model_guard(model), torch.inference_mode():
        if target is None:
            target = choose_output(model(x)).argmax(-1)
        t = resolve_target(target, b, x.device)
        t.classes  # noqa: B018 -- raises unless one class per example (the score is a probability)

        def evaluate(r: Tensor, changed: Tensor) -> Tensor:
            imgs = torch.where(changed.view(-1, 1, h, w), end[r], start[r])
            if channels_last:
                imgs = imgs.contiguous(memory_format=torch.channels_last)
            return select(choose_output(model(imgs)).softmax(-1), t, r)

        counts, probs = _sweep(saliency, pixels_per_step,
                               lambda n: chunk_size(model, x, batch_size, n), evaluate,
                               "pixels", delete)
    return Curve.from_scores(counts.to(x.dtype) / (h * w), probs)
