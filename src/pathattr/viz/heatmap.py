"""Attribution heatmaps: signed (diverging) or absolute, clipped at a percentile, overlaid on
the image, and a grid of methods side by side."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure

SIGNED_CMAP = "RdBu_r"    # red pushes the target up, blue pushes it down, white is neutral
ABSOLUTE_CMAP = "inferno"


def as_array(a: object) -> np.ndarray:
    """A float numpy array from a numpy array or a (CPU or GPU) torch tensor."""
    if isinstance(a, torch.Tensor):
        a = a.detach().float().cpu().numpy()
    return np.asarray(a, dtype=np.float64)


def as_image(image: object) -> np.ndarray:
    """``(H, W, 3)`` or ``(H, W)`` pixels from an image in either layout: a channels-first
    ``(3, H, W)`` or ``(1, H, W)`` one (a model input, ``zoo.unpreprocess``'s result) is
    moved to channels-last."""
    img = as_array(image)
    if img.ndim == 3 and img.shape[0] in (1, 3) and img.shape[-1] not in (1, 3):
        img = img.transpose(1, 2, 0)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[-1] != 3):
        raise ValueError(f"image must be (H, W, 3), (3, H, W) or (H, W), got shape {img.shape}")
    return img


def attribution_map(attr: object) -> np.ndarray:
    """``(H, W)`` map: channels summed for ``(C, H, W)`` input (pixels are ranked on the sum,
    as the insertion/deletion metrics do); ``(H, W)`` passes through."""
    a = as_array(attr)
    if a.ndim == 3:
        a = a.sum(0)
    if a.ndim != 2:
        raise ValueError(f"attribution must be (C, H, W) or (H, W), got shape {a.shape}")
    return a


def normalize(attr: object, signed: bool = True, percentile: float = 99.0) -> np.ndarray:
    """The map scaled by the ``percentile`` of its absolute values and clipped: to [-1, 1] if
    ``signed``, else its absolute value in [0, 1]. A few extreme pixels would otherwise wash out
    the rest. An all-zero map stays zero. Cost: one percentile (a sort) of H*W values."""
    from ..validate import check_number

    check_number(percentile, "percentile", 0, 100, low_open=True)
    m = attribution_map(attr)
    scale = np.percentile(np.abs(m), percentile)
    if scale <= 0:
        scale = np.abs(m).max()
    m = m / scale if scale > 0 else np.zeros_like(m)
    return np.clip(m, -1, 1) if signed else np.clip(np.abs(m), 0, 1)


def heatmap(attr: object, signed: bool = True, percentile: float = 99.0) -> np.ndarray:
    """The coloured map alone: ``(H, W, 3)`` uint8, one pixel per attribution pixel."""
    m = normalize(attr, signed, percentile)
    rgb = colormaps[SIGNED_CMAP](0.5 + 0.5 * m) if signed else colormaps[ABSOLUTE_CMAP](m)
    return (rgb[..., :3] * 255).round().astype(np.uint8)


def overlay(image: object, attr: object, signed: bool = True, percentile: float = 99.0,
            alpha: float = 0.8) -> np.ndarray:
    """The heatmap blended over a greyed copy of ``image`` (``(H, W, 3)``, ``(3, H, W)`` or
    ``(H, W)`` in [0, 1]): each pixel's colour weight is ``alpha`` times its normalised
    magnitude, so unattributed regions show the photo. Returns ``(H, W, 3)`` uint8 of the
    image's size."""
    img = as_image(image)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    m = normalize(attr, signed, percentile)
    if img.shape[:2] != m.shape:
        raise ValueError(f"image is {img.shape[0]}x{img.shape[1]} pixels but the attribution "
                         f"map is {m.shape[0]}x{m.shape[1]}")
    grey = img.mean(2, keepdims=True) * 0.6 + 0.2     # muted so colours stand out
    colour = heatmap(attr, signed, percentile) / 255.0
    w = alpha * np.abs(m)[..., None]
    return (((1 - w) * grey + w * colour).clip(0, 1) * 255).round().astype(np.uint8)


def method_grid(image: object, attrs: Mapping[str, object], notes: Mapping[str, str] | None = None,
                signed: bool = True, percentile: float = 99.0, tile: float = 2.4,
                columns: int = 4) -> Figure:
    """A figure with the input first, then one overlay per method titled with its name and
    ``notes[name]`` (e.g. its completeness gap and time). ``tile`` inches per panel at 100 dpi;
    the figure is ``columns`` (or fewer) panels wide, with one colour bar under the panels
    saying what the colours mean. Cost: one overlay per method."""
    notes = notes or {}
    panels = [("input", as_image(image), "")] + [
        (name, overlay(image, a, signed, percentile), notes.get(name, ""))
        for name, a in attrs.items()]
    cols = min(columns, len(panels))
    rows = -(-len(panels) // cols)
    fig = Figure(figsize=(tile * cols, (tile + 0.35) * rows + 0.6), layout="constrained")
    axes = []
    for i, (name, pixels, note) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(pixels, interpolation="nearest")
        ax.set_title(f"{name}\n{note}" if note else name, fontsize=8)
        ax.set_axis_off()
        axes.append(ax)
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    scale = ScalarMappable(Normalize(-1 if signed else 0, 1),
                           colormaps[SIGNED_CMAP if signed else ABSOLUTE_CMAP])
    bar = fig.colorbar(scale, ax=axes, orientation="horizontal", fraction=0.05, aspect=40,
                       ticks=[-1, 0, 1] if signed else [0, 1])
    bar.ax.set_xticklabels(["lowers the target", "0", "raises it"] if signed else ["0", "max"],
                           fontsize=7)
    bar.set_label(f"each map scaled to its {percentile:g}th percentile of |attribution|",
                  fontsize=7)
    return fig
