"""Insertion / deletion curves (Petsiuk et al. 2018) of several methods on one figure."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure


def curves_figure(curves: Mapping[str, Mapping[str, object]], width: float = 8.0,
                  height: float = 3.2) -> Figure:
    """Two panels, insertion and deletion: score against fraction of pixels, one line per method,
    labelled with its AUC. ``curves[method][kind]`` has ``fractions``, ``scores``, ``auc``
    (``metrics.Curve``); a method may lack a kind. Returns a ``width x height``-inch figure."""
    fig = Figure(figsize=(width, height))
    kinds = ("insertion", "deletion")
    for i, kind in enumerate(kinds):
        ax = fig.add_subplot(1, 2, i + 1)
        for method, by_kind in curves.items():
            c = by_kind.get(kind)
            if c is not None:
                ax.plot(np.asarray(c.fractions), np.asarray(c.scores),
                        label=f"{method} (AUC {float(c.auc):.3f})")
        better = "higher" if kind == "insertion" else "lower"
        ax.set_title(f"{kind} ({better} AUC is better)", fontsize=9)
        ax.set_xlabel("fraction of pixels", fontsize=8)
        ax.set_ylabel("probability of the class", fontsize=8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, None)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.15, top=0.9, wspace=0.25)
    return fig
