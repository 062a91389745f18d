"""``pathattr.summarize``: aggregate a results store into ``summary.json`` and ``report.html``."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..datasets import Dataset, decode
from ..errors import one_line
from ..files import write_file
from ..store import Store
from .workers import LAYER_METHOD


@dataclass
class Summary:
    """What ``summarize`` found: terminal tables, the JSON written beside the store, and the
    HTML report's path."""

    tables: list
    data: dict
    report: Path


def summarize(results: str | Path, sample: int = 4, top: int = 10, model: str | None = None,
              weights: str | None = None) -> Summary:
    """Aggregate a store: per method the done, failed and corrupt counts, mean |delta|, mean
    relative |delta| and time per item; per class the predicted (and, with labels, true)
    counts; the ``top`` features (pixels, or channels for layer methods) by mean |attribution|
    over the dataset; the failures, and the stored results that fail verification (left out of
    every aggregate, with the reason). Writes ``summary.json`` and ``report.html`` (the
    aggregates plus heatmaps of the first ``sample`` items) into ``results``.

    The sample is drawn over its inputs when the run's model is built in, or when ``model``
    (and ``weights``) is given here: a ``module:factory`` or TorchScript model named in the
    results folder is never loaded, since that would run code from wherever the folder came
    from. Raises ``FileNotFoundError`` if there is no store, ``BadStore`` for an index pathattr
    did not write. Cost: reading and hashing every
    attribution once, and loading the model to draw the sample.
    """
    from .. import viz

    results = Path(results)
    with Store(results) as store:
        settings = store.settings() or {}
        rows = store.rows()
        missing = store.missing()
        good, corrupt, sums, sample_attrs, keys = [], [], {}, [], []
        for row, a, reason in store.results(rows):
            if reason is not None or a is None:
                corrupt.append((str(row["key"]), str(row["method"]), reason or "no array"))
                continue
            good.append(row)
            _add_to_sums(sums, row["method"], a)
            if row["key"] in keys or len(keys) < sample:
                keys += [] if row["key"] in keys else [row["key"]]
                sample_attrs.append((row["key"], row["method"], a))
    failed = [r for r in rows if r["status"] == "failed"]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    per_method = {m: _method_stats([r for r in good if r["method"] == m],
                                   sum(r["method"] == m for r in failed),
                                   sum(c[1] == m for c in corrupt)) for m in methods}
    classes = _class_counts(good)
    named = class_names(settings.get("model"))
    top_rows = []
    for m, (total_abs, total, n) in sums.items():
        mean_abs, mean = total_abs.ravel() / n, total.ravel() / n
        for rank, f in enumerate(np.argsort(-mean_abs, kind="stable")[:top], 1):
            where = tuple(int(i) for i in np.unravel_index(f, total_abs.shape))
            name = f"channel {f}" if m.startswith(LAYER_METHOD + "@") else f"pixel {where}"
            top_rows.append((m, rank, name, f"{mean_abs[f]:.4g}", f"{mean[f]:+.4g}"))
    failures = [(str(r["key"]), str(r["method"]), str(r["error"])) for r in failed]
    tables = [
        viz.Table(("method", "done", "failed", "corrupt", "mean |delta|", "mean |delta| / |dF|",
                   "ms per item"),
                  [(m, s["done"], s["failed"], s["corrupt"], _fmt(s["mean_abs_delta"]),
                    _fmt(s["mean_relative_delta"], "{:.2%}"), _fmt(s["ms_per_item"], "{:.1f}"))
                   for m, s in per_method.items()]),
        viz.Table(("class", "name", "predicted", "labelled", "correct"),
                  [(c, named(c), *v) for c, v in sorted(classes.items())]),
        viz.Table(("method", "rank", "feature", "mean |attribution|", "mean attribution"),
                  top_rows),
    ]
    if failures:
        tables.append(viz.Table(("item", "method", "failure"), failures))
    if missing:  # rows deleted from the index: tampering, like a flipped bit
        corrupt.append(("(rows deleted)", "*", f"{missing} result row(s) the store committed "
                        f"are missing from its index"))
    if corrupt:
        tables.append(viz.Table(("item", "method", "stored result fails verification"),
                                corrupt))
    data = {"settings": settings, "methods": per_method,
            "classes": {str(c): dict(zip(("predicted", "labelled", "correct"), v))
                        for c, v in classes.items()},
            "top_features": [dict(zip(("method", "rank", "feature", "mean_abs", "mean"), t))
                             for t in top_rows],
            "failures": [dict(zip(("key", "method", "error"), f)) for f in failures],
            "corrupt": [dict(zip(("key", "method", "reason"), c)) for c in corrupt],
            "missing_rows": missing}
    write_file(results / "summary.json", json.dumps(data, indent=2) + "\n")
    panels = [viz.MethodPanel(f"{m}: mean |attribution|, {n} items",
                              viz.array_png(viz.heatmap(a / n, signed=False)))
              for m, (a, _, n) in sums.items() if not m.startswith(LAYER_METHOD + "@")]
    images, why_not = _sample_images(settings, keys, model, weights)
    for key, m, a in sample_attrs:
        if m.startswith(LAYER_METHOD + "@"):
            continue
        picture = viz.overlay(images[key], a) if key in images else viz.heatmap(a)
        panels.append(viz.MethodPanel(f"{key}: {m}", viz.array_png(picture)))
    report = viz.Report(
        title=f"pathattr run: {results.name}",
        facts=[*((k, _setting(k, v)) for k, v in settings.items()),
               *((m, f"{s['done']} done, {s['failed']} failed, {s['corrupt']} corrupt, "
                  f"mean |delta| {_fmt(s['mean_abs_delta'])}") for m, s in per_method.items())],
        prediction=tables[1], methods=panels, neurons=tables[2],
        methods_note=("The mean |attribution| maps have no sign: brighter (yellow) is larger, "
                      "black is none. The sample's maps: red raises the target output, blue "
                      "lowers it, each scaled to its 99th percentile of |attribution|."),
        notes=[*([why_not] if why_not else []),
               *(f"{k} ({m}) failed: {e}" for k, m, e in failures[:20]),
               *(f"{k} ({m}) stored result fails verification: {e}" for k, m, e in corrupt[:20])])
    return Summary(tables, data, report.write(results / "report.html"))


def class_names(model: object) -> Callable[[int], str]:
    """Class index -> name for a run's model, without loading it: ImageNet's names for the
    built-in EfficientNets, else none (``""``)."""
    if isinstance(model, str) and model.startswith("efficientnet-lite"):
        from ..zoo import class_name

        return class_name
    return lambda _c: ""


#: What a setting left unset means, in the report's words (not Python's ``None``).
_UNSET = {"target": "each item's predicted class", "layer": "none", "weights": "none",
          "labels": "none"}


def _setting(key: str, value: object) -> str:
    return _UNSET.get(key, "-") if value is None else str(value)


def _method_stats(done: list, failed: int, corrupt: int) -> dict:
    deltas = [abs(r["delta"]) for r in done if r["delta"] is not None]
    relative = [v for v in map(relative_gap, done) if v is not None]
    seconds = [r["seconds"] for r in done if r["seconds"] is not None]
    return {"done": len(done), "failed": failed, "corrupt": corrupt,
            "mean_abs_delta": _mean(deltas), "mean_relative_delta": _mean(relative),
            "ms_per_item": _mean([1000 * s for s in seconds])}


def relative_gap(row) -> float | None:
    """A stored row's ``|delta| / |F(x) - F(x')|``, or None for a method without a gap."""
    if row["delta"] is None or row["output_delta"] is None:
        return None
    return abs(row["delta"]) / max(abs(row["output_delta"]), 1e-12)


def _add_to_sums(sums: dict, method: str, a: np.ndarray) -> None:
    """Add one item to ``sums[method] = [sum |map|, sum map, n]``, if its map has the first
    one's shape; an input attribution's map sums its channels (a pixel's total), a layer's is
    per channel."""
    from ..viz import attribution_map

    m = attribution_map(a) if a.ndim == 3 else a
    if method not in sums:
        sums[method] = [np.zeros(m.shape), np.zeros(m.shape), 0]
    total_abs, total, _ = sums[method]
    if m.shape == total.shape:
        total_abs += np.abs(m)
        total += m
        sums[method][2] += 1


def _class_counts(rows: list) -> dict[int, list[int]]:
    """class -> [predicted, labelled, correct] over done ``rows``, one vote per item (not per
    method)."""
    counts: dict[int, list[int]] = {}
    seen = set()
    for r in rows:
        if r["key"] in seen:
            continue
        seen.add(r["key"])
        counts.setdefault(r["prediction"], [0, 0, 0])[0] += 1
        if r["label"] is not None:
            counts.setdefault(r["label"], [0, 0, 0])[1] += 1
            counts[r["label"]][2] += int(r["label"] == r["prediction"])
    return counts


def _sample_images(settings: dict, keys: list[str], model: str | None, weights: str | None
                   ) -> tuple[dict[str, np.ndarray], str | None]:
    """The sample's inputs as the model saw them, for overlays, and None; or no images and the
    reason (the report then shows bare heatmaps): the run's model is not built in and none was
    given, or the data or model is no longer loadable."""
    from ..named import BUILTIN, load_model

    if model is None:
        model, weights = settings.get("model"), None
        if not isinstance(model, str) or model not in BUILTIN:
            return {}, (f"input images not drawn: the run's model {model!r} is not built in, "
                        f"and code named in a results folder is never run; pass --model to "
                        f"summarize to draw them")
    try:
        bundle = load_model(model, weights)
        raws = Dataset(settings["data"]).read(keys)
        return {r.key: bundle.display(decode(r, bundle.preprocess)) for r in raws}, None
    except Exception as e:  # the report is still useful without the pictures
        return {}, f"input images not drawn: {one_line(e)}"


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _fmt(v: float | None, pattern: str = "{:.4g}") -> str:
    return "-" if v is None else pattern.format(v)
