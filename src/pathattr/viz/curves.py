"""Faithfulness curves (insertion / deletion, Petsiuk et al. 2018; ROAD, Rong et al. 2022) of
several methods on one figure, the controls beside them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

#: Panel title and direction of each kind of curve.
KINDS = {"insertion": ("insertion", "higher"), "deletion": ("deletion", "lower"),
         "road_morf": ("ROAD, most relevant first", "lower"),
         "road_lerf": ("ROAD, least relevant first", "higher")}
INVERSE = " (inverse)"
RANDOM = "random ranking"


def curves_figure(curves: Mapping[str, Mapping[str, object]], width: float = 8.0,
                  height: float = 3.2, kinds: Sequence[str] = ("insertion", "deletion")
                  ) -> Figure:
    """One panel per kind (``KINDS``): score against the fraction of pixels changed, one line
    per method, labelled with its AUC. ``curves[method][kind]`` has ``fractions``, ``scores``,
    ``auc`` (``metrics.Curve``); a method may lack a kind. Controls are drawn apart: a
    method's inverse ranking (``"<method> (inverse)"``) dotted in its colour, the random ranking
    dashed grey. Returns a ``width x height``-inch figure."""
    fig = Figure(figsize=(width, height))
    colours = colormaps["tab10"]
    methods = [m for m in curves if not m.endswith(INVERSE) and m != RANDOM]
    colour = {m: colours(i % 10) for i, m in enumerate(methods)}
    for i, kind in enumerate(kinds):
        ax = fig.add_subplot(1, len(kinds), i + 1)
        for method, by_kind in curves.items():
            c = by_kind.get(kind)
            if c is None:
                continue
            if method == RANDOM:
                style = {"color": "0.5", "linestyle": "--"}
            elif method.endswith(INVERSE):
                style = {"color": colour.get(method[:-len(INVERSE)], "0.3"), "linestyle": ":"}
            else:
                style = {"color": colour[method]}
            ax.plot(np.asarray(c.fractions), np.asarray(c.scores),
                    label=f"{method} (AUC {float(c.auc):.3f})", **style)
        title, better = KINDS[kind]
        ax.set_title(f"{title} ({better} AUC is better)", fontsize=9)
        ax.set_xlabel("fraction of pixels", fontsize=8)
        ax.set_ylabel("probability of the class", fontsize=8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, None)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=6)
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.15, top=0.9, wspace=0.25)
    return fig
