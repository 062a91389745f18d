"""Faithfulness curves (insertion / deletion, Petsiuk et al. 2018; ROAD, Rong et al. 2022) of
several methods on one figure, the controls beside them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

#: Panel title and direction of each kind of curve.
KINDS = {"insertion": ("insertion", "higher"), "deletion": ("deletion", "lower"),
         "road_morf": ("ROAD, most relevant first", "lower"),
         "road_lerf": ("ROAD, least relevant first", "higher")}
INVERSE = " (inverse)"
RANDOM = "random ranking"


def curves_figure(curves: Mapping[str, Mapping[str, Any]],
                  kinds: Sequence[str] = ("insertion", "deletion"), columns: int = 6,
                  panel: tuple[float, float] = (2.3, 2.0)) -> Figure:
    """Small multiples: for each kind (``KINDS``) a row of panels, one per method, each with
    the method's curve (score against the fraction of pixels changed), its inverse ranking
    (``"<method> (inverse)"``, dotted) and the random ranking (dashed grey), titled with their
    AUCs; rows wrap after ``columns`` methods; axes are shared, so panels compare at a
    glance. ``curves[method][kind]`` has ``fractions``, ``scores``, ``auc``
    (``metrics.Curve``); a method may lack a kind. ``panel``: inches per panel."""
    methods = [m for m in curves if not m.endswith(INVERSE) and m != RANDOM] or \
        [m for m in curves if m == RANDOM]
    cols = max(1, min(columns, len(methods)))
    wraps = -(-len(methods) // cols)
    rows = len(kinds) * wraps
    fig = Figure(figsize=(panel[0] * cols, panel[1] * rows + 0.3), layout="constrained")
    colours = colormaps["tab10"]
    axes = fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False)
    for k, kind in enumerate(kinds):
        title, better = KINDS[kind]
        for i, method in enumerate(methods):
            ax = axes[k * wraps + i // cols][i % cols]
            shown = []
            lines = [(RANDOM, {"color": "0.6", "linestyle": "--"}),
                     (method + INVERSE, {"color": colours(i % 10), "linestyle": ":"}),
                     (method, {"color": colours(i % 10), "linewidth": 1.8})]
            for name, style in lines if method != RANDOM else lines[-1:]:
                c = curves.get(name, {}).get(kind)
                if c is None:
                    continue
                ax.plot(np.asarray(c.fractions), np.asarray(c.scores), **style)
                shown.append((name, float(c.auc)))
            own = dict(shown)
            head = f"{method}: {own[method]:.3f}" if method in own else method
            rest = ", ".join(f"{'inv' if n.endswith(INVERSE) else 'rand'} {v:.3f}"
                             for n, v in shown if n != method)
            ax.set_title(head + (f"\n({rest})" if rest else ""), fontsize=7)
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=6)
            ax.set_xlim(0, 1)
            ax.set_ylim(0, None)
            if i % cols == 0:
                ax.set_ylabel(f"{title}\n({better} AUC is better)", fontsize=7)
        for i in range(len(methods), wraps * cols):  # an unfilled last row
            axes[k * wraps + i // cols][i % cols].set_axis_off()
    fig.supxlabel("fraction of pixels changed (solid: the method, dotted: its inverse ranking, "
                  "dashed: a random ranking; titles give AUCs)", fontsize=7)
    return fig
