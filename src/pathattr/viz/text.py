"""Token attributions as coloured HTML and as a terminal table."""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
from matplotlib import colormaps

from .heatmap import SIGNED_CMAP


def _scaled(scores: Sequence[float], scale: float | None = None) -> np.ndarray:
    """``scores`` over ``scale`` (default: their largest magnitude), in [-1, 1]."""
    s = np.asarray(scores, dtype=np.float64)
    top = (np.abs(s).max() if s.size else 0.0) if scale is None else scale
    return np.clip(s / top, -1, 1) if top > 0 else np.zeros_like(s)


def colours(v: float) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """The background of a scaled score ``v`` in [-1, 1] on the diverging map, and the text
    colour readable on it: white on the dark ends, black elsewhere."""
    r, g, b, _ = (round(255 * c) for c in colormaps[SIGNED_CMAP](0.5 + 0.5 * v))
    dark = 0.299 * r + 0.587 * g + 0.114 * b < 128  # perceived brightness
    return (r, g, b), ((255, 255, 255) if dark else (0, 0, 0))


def tokens_html(tokens: Sequence[str], scores: Sequence[float], scale: float | None = None
                ) -> str:
    """An HTML fragment: one ``<span>`` per token, background from the diverging map scaled by
    ``scale`` (default: the largest magnitude; red raises the output, blue lowers it), text
    white where the background is dark, the raw score in its ``title``. Tokens are
    HTML-escaped. Cost: linear in the number of tokens."""
    if len(tokens) != len(scores):
        raise ValueError(f"{len(tokens)} tokens but {len(scores)} scores")
    spans = []
    for tok, s, raw in zip(tokens, _scaled(scores, scale), scores, strict=True):
        (r, g, b), (tr, tg, tb) = colours(s)
        spans.append(f'<span class="tok" style="background: rgb({r},{g},{b}); '
                     f'color: rgb({tr},{tg},{tb})" title="{float(raw):+.4f}">'
                     f'{html.escape(tok)}</span>')
    return '<p class="tokens">' + " ".join(spans) + "</p>"


def tokens_table(tokens: Sequence[str], scores: Sequence[float], bar: int = 20) -> str:
    """A plain-text table, one token per line: the token, its score and a bar of up to ``bar``
    characters, right of the axis for positive scores and left for negative ones."""
    if len(tokens) != len(scores):
        raise ValueError(f"{len(tokens)} tokens but {len(scores)} scores")
    width = max([5, *(len(t) for t in tokens)])
    lines = [f"{'token':<{width}}  {'score':>9}  {'lowers':>{bar}}|raises"]
    for tok, s, raw in zip(tokens, _scaled(scores), scores, strict=True):
        n = round(abs(s) * bar)
        left = ("#" * n if s < 0 else "").rjust(bar)
        right = "#" * n if s > 0 else ""
        lines.append(f"{tok:<{width}}  {float(raw):+9.4f}  {left}|{right}")
    return "\n".join(lines)
