"""Token attributions as coloured HTML and as a terminal table."""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
from matplotlib import colormaps

from .heatmap import SIGNED_CMAP


def _scaled(scores: Sequence[float]) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    top = np.abs(s).max() if s.size else 0.0
    return s / top if top > 0 else np.zeros_like(s)


def tokens_html(tokens: Sequence[str], scores: Sequence[float]) -> str:
    """An HTML fragment: one ``<span>`` per token, background from the diverging map scaled by
    the largest magnitude (red raises the output, blue lowers it), the raw score in its
    ``title``. Tokens are HTML-escaped. Cost: linear in the number of tokens."""
    if len(tokens) != len(scores):
        raise ValueError(f"{len(tokens)} tokens but {len(scores)} scores")
    cmap = colormaps[SIGNED_CMAP]
    spans = []
    for tok, s, raw in zip(tokens, _scaled(scores), scores, strict=True):
        r, g, b, _ = (round(255 * c) for c in cmap(0.5 + 0.5 * s))
        spans.append(f'<span class="tok" style="background: rgb({r},{g},{b})" '
                     f'title="{float(raw):+.4f}">{html.escape(tok)}</span>')
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
