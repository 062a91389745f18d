"""Faithfulness of attribution methods over a set of images, with the evidence to rank them.

Per image and method: insertion (blur substrate), deletion (zero substrate) and ROAD (MoRF and
LeRF) curves, beside the controls every comparison needs: the method's own *inverse* ranking
(least important first, for insertion and deletion) and one *random* ranking per image. Over
the images: each AUC's mean with a bootstrap 95 % interval, and paired comparisons
(``metrics.compare``: bootstrap interval of the differences, Wilcoxon p-value) of every method
against the best one and against the random ranking, so a table says "better" only when the
interval excludes 0 and the rank test agrees.

``Evaluator.add`` takes one image at a time (memory: one image's curves), so the images may
come from a folder, a data set, or a ``pathattr run`` store. A 1-D signal ``(1, C, L)`` is
scored as an image one pixel high (``Signals``): insertion blurs along its length, ROAD imputes
each removed sample from its two neighbours.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .files import make_dirs, write_file
from .metrics import Curve, compare, deletion, insertion, road
from .metrics.statistics import Interval, bootstrap, detectable_effect, holm, inputs_needed
from .serialize import jsonable
from .viz.curves import INVERSE, RANDOM

#: Each metric's direction: +1 where a higher AUC is better, -1 where lower is.
METRICS = {"insertion": 1, "deletion": -1, "road_morf": -1, "road_lerf": 1}


@dataclass
class Evaluation:
    """``auc[row][metric]``: one AUC per image, rows being the methods, each method's inverse
    ranking (``"<method> (inverse)"``) and ``RANDOM``; ``curves[row][metric]``: the mean curve
    over the images; ``inputs``: the images' labels, in order."""

    methods: list[str]
    metrics: list[str]
    inputs: list[str] = field(default_factory=list)
    auc: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    curves: dict[str, dict[str, Curve]] = field(default_factory=dict)
    #: per method, each image's relative completeness gap |delta| / |F(x) - F(x')| (None where
    #: the method has none, or it was not given)
    completeness: dict[str, list[float | None]] = field(default_factory=dict)

    def _repr_html_(self) -> str:
        """Jupyter's view: the AUC and comparison tables (``viz.notebook``)."""
        from .viz.notebook import evaluation_html

        return evaluation_html(self)

    def rows(self) -> list[str]:
        return list(self.auc)

    def intervals(self, level: float = 0.95) -> dict[str, dict[str, Interval]]:
        """``{row: {metric: Interval}}``: the mean AUC with its bootstrap interval."""
        return {r: {m: bootstrap(v, level) for m, v in by.items()} for r, by in self.auc.items()}

    def best(self, metric: str) -> str:
        """The method (not a control) with the best mean AUC on ``metric``."""
        sign = METRICS[metric]
        return max(self.methods, key=lambda m: sign * float(np.mean(self.auc[m][metric])))

    def comparisons(self, reference: str | None = None, level: float = 0.95
                    ) -> list[dict[str, Any]]:
        """Paired comparisons per metric: ``reference`` against every other method and the
        random ranking, or (no reference) every other method against the metric's best and
        every method against the random ranking. Each is ``{"metric", "method", "against",
        "difference" (Interval of method minus against), "p_value" (Wilcoxon), "p_holm" (Holm's
        adjustment within the metric's comparisons: one family per metric), "effect" (Cohen's
        d_z of the differences), "rank_biserial", "inputs_needed" (for 80 % power at this
        effect: ``metrics.inputs_needed``), "verdict"}``, the verdict "better", "worse" or "no
        difference" for ``method`` (the metric's direction applied; not "no difference" only
        when the interval excludes 0 and the Holm-adjusted p is below ``1 - level``)."""
        if reference is not None and reference not in self.methods:
            raise ValueError(f"reference {reference!r} is not one of {self.methods}")
        out = []
        if not self.inputs:  # nothing scored yet: nothing to compare
            return out
        for metric in self.metrics:
            has_random = RANDOM in self.auc and metric in self.auc[RANDOM]
            if reference is None:
                best = self.best(metric)
                pairs = [(m, best) for m in self.methods if m != best]
                pairs += [(m, RANDOM) for m in self.methods] if has_random else []
            else:
                pairs = [(reference, m) for m in self.methods if m != reference]
                pairs += [(reference, RANDOM)] if has_random else []
            family = [compare(self.auc[a][metric], self.auc[b][metric], level)
                      for a, b in pairs]
            for (method, against), c, p in zip(pairs, family, holm([c.p_value for c in family])):
                c = replace(c, adjusted_p=p)
                sign = METRICS[metric]
                verdict = {"a > b": "better" if sign > 0 else "worse",
                           "a < b": "worse" if sign > 0 else "better"}.get(c.verdict,
                                                                            "no difference")
                out.append({"metric": metric, "method": method, "against": against,
                            "difference": c.difference, "p_value": c.p_value, "p_holm": p,
                            "effect": c.effect, "rank_biserial": c.rank_biserial,
                            "inputs_needed": inputs_needed(c.effect, level),
                            "verdict": verdict})
        return out

    def tables(self, reference: str | None = None):
        """The AUC table (mean [95 % interval] per row and metric, best first by the first
        metric) and the comparison table
        (``comparisons(reference)``), as ``viz.Table``s."""
        from .viz import Table

        iv = self.intervals()
        arrows = {m: "↑" if METRICS[m] > 0 else "↓" for m in self.metrics}
        first = self.metrics[0]
        order = sorted(self.rows(), key=lambda r: -METRICS[first] * iv[r][first].mean
                       if first in iv[r] else float("inf"))  # best first on the first metric
        auc = Table(("method", *(f"{m} AUC {arrows[m]}" for m in self.metrics)),
                    [(r, *(str(iv[r][m]) if m in iv[r] else "-" for m in self.metrics))
                     for r in order])
        comp = Table(("metric", "method", "against", "difference [95 %]", "Wilcoxon p",
                      "Holm p", "d_z", "r_rb", "n for 80 %", "verdict"),
                     [(c["metric"], c["method"], c["against"], str(c["difference"]),
                       f"{c['p_value']:.3g}", f"{c['p_holm']:.3g}", f"{c['effect']:.2f}",
                       f"{c['rank_biserial']:.2f}", _count(c["inputs_needed"]), c["verdict"])
                      for c in self.comparisons(reference)])
        return auc, comp

    def completeness_table(self):
        """Per image, each method's relative completeness gap, then the mean and the largest
        (methods without a gap show "-"), as a ``viz.Table``."""
        from .viz import Table

        def cell(v):
            return "-" if v is None else f"{v:.2%}"

        cols = [m for m in self.methods if any(v is not None for v in self.completeness.get(m, []))]
        rows = [(label, *(cell(self.completeness[m][i]) for m in cols))
                for i, label in enumerate(self.inputs)]
        for name, f in (("mean", np.mean), ("max", np.max)):
            rows.append((name, *(cell(float(f([v for v in self.completeness[m] if v is not None])))
                                 for m in cols)))
        return Table(("image", *(f"{m} |δ| / |ΔF|" for m in cols)), rows)

    def to_dict(self, reference: str | None = None) -> dict:
        iv = self.intervals()
        return {"inputs": self.inputs, "methods": self.methods, "metrics": self.metrics,
                "auc": self.auc, "completeness": self.completeness,
                "intervals": {r: {m: vars(i) for m, i in by.items()} for r, by in iv.items()},
                "comparisons": [{**c, "difference": vars(c["difference"])}
                                for c in self.comparisons(reference)]}


class Signals(nn.Module):
    """``model`` on signals ``(B, C, L)`` seen as images ``(B, C, 1, L)``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.training = model.training  # the eval-mode checks read the wrapper too

    def forward(self, x: Tensor) -> Tensor:
        # contiguous: a channels-last image squeezed to a signal makes conv1d ~100x slower
        return self.model(x.squeeze(-2).contiguous())


def power_table(evaluation: Evaluation, reference: str | None = None):
    """The comparisons the data did not decide, fewest inputs needed first: the observed
    effect ``d_z`` and how many inputs a new study would need to decide it with 80 % power
    (``metrics.inputs_needed``), beside how many it had; a ``viz.Table``."""
    from .viz import Table

    n = str(len(evaluation.inputs))
    open_ = sorted((c for c in evaluation.comparisons(reference)
                    if c["verdict"] == "no difference"), key=lambda c: c["inputs_needed"])
    return Table(("metric", "method", "against", "d_z", "inputs needed (80 % power)",
                  "inputs here"),
                 [(c["metric"], c["method"], c["against"], f"{c['effect']:.2f}",
                   _count(c["inputs_needed"]), n) for c in open_])


def power_note(evaluation: Evaluation, reference: str | None = None) -> str:
    """One sentence: the smallest effect the inputs at hand decide with 80 % power
    (``metrics.detectable_effect``) and how many comparisons stayed undecided."""
    n = len(evaluation.inputs)
    rows = evaluation.comparisons(reference)
    open_ = sum(c["verdict"] == "no difference" for c in rows)
    return (f"Power: {n} inputs decide an effect |d_z| >= {detectable_effect(n):.2f} with 80 % "
            f"power; {open_} of {len(rows)} comparisons undecided, with the inputs each would "
            f"need")


def _count(n: float) -> str:
    return "-" if n == float("inf") else f"{n:.0f}"


class Evaluator:
    """Collects the curves of every method on each image, then the ``Evaluation``.

    ``metrics``: a subset of ``METRICS``; ``pixels_per_step`` for insertion and deletion, or
    ``points``: that many steps per curve (``pixels_per_step`` then follows from the first
    image's size); ``controls``: add each method's inverse ranking and a random ranking
    (seeded per image).
    """

    def __init__(self, model: nn.Module, methods: Sequence[str],
                 metrics: Sequence[str] = ("insertion", "deletion"), pixels_per_step: int = 224,
                 controls: bool = True, road_fractions: Sequence[float] | None = None,
                 batch_size: int | str = "auto", seed: int = 0, *, points: int | None = None):
        unknown = [m for m in metrics if m not in METRICS]
        if unknown or not metrics:
            raise ValueError(f"metrics must be a non-empty list of {', '.join(METRICS)}, got "
                             f"{list(metrics)!r}")
        self.model, self.pixels_per_step, self.controls = model, pixels_per_step, controls
        self._signals: Signals | None = None
        self.points = points
        self.road_kw: dict[str, Any] = {} if road_fractions is None else {
            "fractions": tuple(road_fractions)}
        self.batch_size, self.seed = batch_size, seed
        self.result = Evaluation(list(methods), list(metrics))
        self._sums: dict[str, dict[str, list]] = {}

    def add(self, label: str, x: Tensor, attributions: Mapping[str, Tensor], target: int,
            gaps: Mapping[str, float | None] | None = None) -> dict[str, dict[str, Curve]]:
        """Score one image ``x`` ``(1, C, H, W)`` for the ``target`` class with each method's
        attributions (``(C, H, W)`` or ``(1, C, H, W)``); ``gaps``: each method's relative
        completeness gap on it, for the summary table. Returns this image's curves
        ``{row: {metric: Curve}}``. Cost per method: ``2 * (H W / pixels_per_step + 1)``
        forwards for insertion and deletion (twice with the controls), ``2 * 10`` forwards
        and sparse solves for ROAD; the random ranking once per image."""
        if not isinstance(x, Tensor) or x.dim() not in (3, 4) or x.shape[0] != 1:
            raise ValueError(f"x for {label}: one image (1, C, H, W) or signal (1, C, L) per "
                             f"add, got {tuple(getattr(x, 'shape', ()))}; add each input with "
                             f"its own label")
        if x.dim() == 3:  # a signal: an image one pixel high, the model fed the signal
            if self._signals is None:
                self._signals = Signals(self.model)
            attributions = {m: a.reshape(1, *x.shape[1:2], 1, x.shape[-1])
                            for m, a in attributions.items()}
            x = x[:, :, None]
        if self.result.inputs and x.shape[-2:] != self._size:
            raise ValueError(f"{label}: {tuple(x.shape[-2:])} pixels, but the images before it "
                             f"have {tuple(self._size)}: curves over a set need one size")
        self._size = x.shape[-2:]
        if self.points is not None:
            self.pixels_per_step = -(-x.shape[-1] * x.shape[-2] // self.points)
        seed = self.seed + len(self.result.inputs)
        rows: dict[str, tuple[Tensor, str]] = {}
        for m in self.result.methods:
            if m not in attributions:
                raise ValueError(f"attributions for {label}: no {m!r} (have "
                                 f"{', '.join(attributions)})")
            a = attributions[m]
            rows[m] = (a if a.dim() == 4 else a[None], "attribution")
            if self.controls:
                rows[m + INVERSE] = (rows[m][0], "inverse")
        if self.controls:
            rows[RANDOM] = (torch.zeros_like(x), "random")
        curves = {}
        for row, (a, ranking) in rows.items():
            curves[row] = self._curves(x, a, target, ranking, seed,
                                       road_too=not row.endswith(INVERSE))
        self.result.inputs.append(label)
        for m in self.result.methods:
            v = (gaps or {}).get(m)
            self.result.completeness.setdefault(m, []).append(None if v is None else float(v))
        for row, by in curves.items():
            for metric, c in by.items():
                self.result.auc.setdefault(row, {}).setdefault(metric, []).append(
                    float(c.auc[0]))
                acc = self._sums.setdefault(row, {}).setdefault(metric, [c.fractions, 0.0])
                acc[1] = acc[1] + c.scores[0].double()
        n = len(self.result.inputs)
        self.result.curves = {r: {m: Curve.from_scores(f.double(), s / n)
                                  for m, (f, s) in by.items()} for r, by in self._sums.items()}
        return curves

    def _curves(self, x: Tensor, a: Tensor, target: int, ranking: str, seed: int,
                road_too: bool) -> dict[str, Curve]:
        t = torch.tensor([target], device=x.device)
        model = self.model if self._signals is None else self._signals
        kw = {"target": t, "pixels_per_step": self.pixels_per_step,
              "batch_size": self.batch_size, "ranking": ranking, "seed": seed}
        out = {}
        for metric in self.result.metrics:
            if metric == "insertion":
                out[metric] = insertion(model, x, a, **kw)
            elif metric == "deletion":
                out[metric] = deletion(model, x, a, **kw)
            elif road_too:  # ROAD's own control of MoRF is LeRF, and the random ranking
                out[metric] = road(model, x, a, target=t, order=metric[5:],
                                   ranking=ranking, seed=seed, batch_size=self.batch_size,
                                   **self.road_kw)
        return out


def write_evaluation(evaluation: Evaluation, directory: Path, title: str,
                     facts: Sequence[tuple[str, str]] = ()) -> Path:
    """Write ``evaluation.json`` (every AUC, interval and comparison) and ``evaluation.html``
    (the mean curves with the controls, the AUC table, the comparisons) into ``directory``.
    Returns the HTML's path."""
    from . import viz

    make_dirs(directory)
    write_file(directory / "evaluation.json", json.dumps(jsonable(evaluation.to_dict()),
                                                          indent=1) + "\n")
    auc, comp = evaluation.tables()
    complete = evaluation.completeness_table()
    png = viz.figure_png(viz.curves_figure(evaluation.curves, kinds=evaluation.metrics))
    n = len(evaluation.inputs)
    report = viz.Report(
        title=title, facts=[*facts, ("images", f"{n}: {', '.join(evaluation.inputs[:20])}"
                                     + (" ..." if n > 20 else ""))],
        sections=[(f"Faithfulness over {n} images: mean AUC [95 % bootstrap interval]", png,
                   [auc]),
                  ("Paired comparisons (method minus against; 'better' only when the interval "
                   "excludes 0 and Holm's adjusted p < 0.05, one family per metric)", None,
                   [comp]),
                  (power_note(evaluation), None, [power_table(evaluation)]),
                  *([("Completeness per image", None, [complete])]
                    if len(complete.headers) > 1 else [])],
        notes=["Controls: '(inverse)' ranks the method's least important pixels first; "
               "'random ranking' is a seeded random order per image. A method is evidence "
               "of faithfulness where it beats both."])
    return report.write(directory / "evaluation.html")
