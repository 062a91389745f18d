"""The model-randomisation sanity check (Adebayo et al. 2018), cascading from the top.

A method that explains the model must change when the model's weights are replaced by random
ones. Starting at the output, each parameterised layer in turn is re-initialised (keeping the
ones above it random too), and the attributions are compared with the trained model's by the
Spearman rank correlation of their absolute values, per example, and for images also by the
structural similarity (SSIM, scikit-image's) of the channel-summed absolute maps, each scaled to
[0, 1]. Correlations that stay near 1 as layers are randomised mean the method shows the input,
not the model. The user's model is never touched: the check works on a copy.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..targets import TargetSpec
from ..validate import check_finite


@dataclass(frozen=True)
class RandomisationCurve:
    """``layers``: the randomised layers, top first; ``correlations`` ``(n_layers, B)``: the
    rank correlation of ``|attributions|`` after randomising ``layers[:k+1]`` with the trained
    model's, per example; ``ssim`` ``(n_layers, B)`` the SSIM of the maps (images only, else
    None)."""

    layers: list[str]
    correlations: np.ndarray
    ssim: np.ndarray | None = None

    def mean(self) -> np.ndarray:
        """The mean correlation over examples, per cascade step."""
        return self.correlations.mean(1)


def parameterised_layers(model: nn.Module) -> list[str]:
    """Names of the modules holding parameters of their own, from the output to the input
    (the reverse of definition order, which is execution order for most models)."""
    names = [name for name, m in model.named_modules()
             if name and any(True for _ in m.parameters(recurse=False))]
    return names[::-1]


def randomisation_check(method: Callable[[nn.Module], Any], model: nn.Module, x: Tensor,
                        target: TargetSpec = None, layers: Sequence[str] | None = None,
                        seed: int = 0, ssim: bool | None = None,
                        **attribute_kwargs) -> RandomisationCurve:
    """Cascading randomisation. ``method``: builds an explainer from a model (a class such as
    ``pathattr.IntegratedGradients``, or ``lambda m: ...``); its ``attribute(x, target=target,
    **attribute_kwargs)`` is called on the trained model and after each step. ``layers``:
    module names, top first (default ``parameterised_layers``). Each layer is re-initialised by
    its ``reset_parameters()``, or with normal noise of its parameters' standard deviation.
    ``ssim``: also the SSIM of the maps; default for images ``(B, C, H, W)`` (needs
    scikit-image, in pathattr's ``zoo`` extra). Cost: ``len(layers) + 1`` attributions, and one
    copy of the model."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    names = list(layers) if layers is not None else parameterised_layers(model)
    modules = dict(model.named_modules())
    unknown = [n for n in names if n not in modules]
    if unknown or not names:
        raise ValueError(f"layers: unknown {unknown}" if unknown else
                         "layers: the model has no parameterised layer to randomise")
    image = isinstance(x, Tensor) and x.dim() == 4
    if ssim is None:
        ssim = image
    if ssim:
        if not image:
            raise ValueError(f"ssim compares image maps; x has shape {tuple(x.shape)}, not "
                             f"(B, C, H, W)")
        try:
            from skimage.metrics import structural_similarity
        except ImportError:
            raise ImportError("ssim needs scikit-image (pip install 'pathattr[zoo]'); or pass "
                              "ssim=False") from None
    win = None
    if ssim:  # scikit-image's 7 x 7 window, or the largest odd one the maps hold
        win = min(7, *x.shape[-2:])
        win -= 1 - win % 2
        if win < 3:
            raise ValueError(f"ssim needs maps of at least 3 x 3 pixels, x has "
                             f"{tuple(x.shape[-2:])}; pass ssim=False")
    copied = copy.deepcopy(model)
    reference = _attributions(method(copied).attribute(x, target=target, **attribute_kwargs))
    rows, similar = [], []
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name in names:
            _randomise(copied.get_submodule(name), generator)
            after = _attributions(method(copied).attribute(x, target=target, **attribute_kwargs))
            rows.append([_spearman(a, b) for a, b in zip(_scores(reference), _scores(after))])
            if ssim:
                similar.append([structural_similarity(a, b, data_range=1.0, win_size=win)
                                for a, b in zip(_maps(reference, x), _maps(after, x))])
    return RandomisationCurve(names, np.asarray(rows), np.asarray(similar) if ssim else None)


def _randomise(module: nn.Module, generator: torch.Generator) -> None:
    with torch.no_grad():
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()
            return
        for p in module.parameters(recurse=False):
            std = float(p.std()) if p.numel() > 1 else 1.0
            p.copy_(torch.randn(p.shape, generator=generator, dtype=p.dtype) * (std or 1.0))


def _attributions(result: object) -> Tensor:
    a = getattr(result, "attributions", result)
    if isinstance(a, tuple):
        a = torch.cat([t.flatten(1) for t in a], 1)
    if not isinstance(a, Tensor):
        raise TypeError(f"method: its attribute() returned {type(result).__name__}, not an "
                        f"Attribution or a tensor")
    return check_finite(a.detach(), "the attributions")


def _scores(a: Tensor) -> np.ndarray:
    return a.flatten(1).abs().double().cpu().numpy()


def _maps(a: Tensor, x: Tensor) -> np.ndarray:
    """``(B, H, W)`` channel-summed ``|a|`` (as insertion and deletion rank pixels), each map
    scaled to [0, 1]."""
    b, _, h, w = x.shape
    m = a.reshape(b, -1, h, w).sum(1).abs().double().cpu().numpy()
    top = m.reshape(b, -1).max(1)
    return m / np.where(top > 0, top, 1.0)[:, None, None]


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")  # a constant map has no ranking
    result: Any = spearmanr(a, b)  # scipy's result type is not in its stubs
    return float(result.statistic)
