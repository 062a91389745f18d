"""Bar charts of the most important neurons (channels) of a layer under several scores."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure


def neuron_bars(neurons: Sequence[int], scores: Mapping[str, Sequence[float]],
                title: str = "", width: float = 8.0, row_height: float = 0.22) -> Figure:
    """Horizontal grouped bars: one row per neuron in ``neurons`` (drawn top to bottom in the
    given order), one bar per score name (e.g. Neuron IG, DeepLIFT, ablation effect), each
    score list aligned with ``neurons``. Scores of different units are each scaled by their
    largest magnitude so they share an axis; the legend says so. Returns a figure ``width``
    inches wide and ``row_height`` inches per neuron (plus margins)."""
    n, k = len(neurons), len(scores)
    fig = Figure(figsize=(width, 1.0 + row_height * max(n, 1)))
    ax = fig.add_subplot(1, 1, 1)
    y = np.arange(n)
    height = 0.8 / max(k, 1)
    for j, (name, values) in enumerate(scores.items()):
        v = np.asarray(values, dtype=np.float64)
        scale = np.abs(v).max() if v.size and np.abs(v).max() > 0 else 1.0
        ax.barh(y - 0.4 + height * (j + 0.5), v / scale, height=height,
                label=f"{name} (/ {scale:.3g})")
    ax.set_yticks(y, [f"#{i}" for i in neurons], fontsize=7)
    ax.invert_yaxis()
    ax.axvline(0, color="black", linewidth=0.6)
    ax.set_xlabel("score / its largest magnitude", fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.6 / fig.get_figheight(),
                        top=1 - 0.4 / fig.get_figheight())
    return fig
