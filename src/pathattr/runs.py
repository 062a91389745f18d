"""Attribution for a whole dataset, resumable: ``pathattr.run(...)`` and ``summarize(...)``.

The driver lists the items, skips those the store already holds, cuts the rest into batches,
and hands each batch to an engine: ``local`` (one ``Worker`` in this process) or ``ray`` (one
``Worker`` actor per Ray worker, each loading the model once). Either way the driver alone
writes the store (``pathattr.store``), one transaction per batch, so Ray workers need no shared
file system and a kill at any moment is safe.

Batches are fixed slices of the dataset's key order, so an interrupted run recomputes a pending
batch with exactly the items it had, and results do not depend on where the run was stopped.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .datasets import Dataset, ItemError, Raw, data_id, decode
from .errors import SettingError, one_line
from .files import write_file
from .store import BadStore, Outcome, Store, StoreBusy
from .validate import check_finite

#: ``--layer NAME`` adds the method ``conductance@NAME``: Neuron IG (total conductance) of each
#: channel of that layer (Shrikumar et al. 2018), stored as one value per channel.
LAYER_METHOD = "conductance"

#: One batch of work: each item with the methods it still needs.
Work = list[tuple[Raw, tuple[str, ...]]]


@dataclass(frozen=True)
class Settings:
    """What a worker needs to compute, picklable for Ray. ``identity()`` must match between a
    store and the run resuming it; methods may be added to a store later."""

    model: str
    weights: str | None
    data: str
    steps: int
    target: str | None
    #: Part of a run's identity because batched kernels round differently per batch size
    #: (measured: 16 of 200 digits results moved by up to 2.5e-7 between sizes 4 and 16).
    batch_size: int

    def identity(self) -> dict:
        return asdict(self)


@dataclass
class RunResult:
    """``done`` / ``failed``: (item, method) pairs computed by this call; ``skipped``: pairs the
    store already held; ``seconds``: wall time of this call; ``recomputed``: ``(key, method,
    reason)`` of stored results that failed verification and were computed again."""

    out: Path
    done: int
    failed: int
    skipped: int
    seconds: float
    recomputed: list[tuple[str, str, str]] = field(default_factory=list)


class Worker:
    """One model, turning batches of raw items into outcomes. ``compute`` raises
    ``SettingError`` for a bad model, layer or target (the run cannot go on); a bad item only
    fails that item."""

    def __init__(self, settings: Settings, layers: Sequence[str] = ()):
        self.settings = settings
        self.target: int | None = None
        self.failure: Exception | None = None
        try:
            self._load(layers)
        except Exception as e:  # raised by compute(): Ray reports an actor's failed creation
            self.failure = e    # only as text, and the user should see this error itself

    def _load(self, layers: Sequence[str]) -> None:
        from .layers import resolve_layer
        from .named import load_model

        self.bundle = load_model(self.settings.model, self.settings.weights)
        for layer in layers:
            try:
                resolve_layer(self.bundle.model, layer)
            except ValueError as e:
                raise SettingError(str(e), param="layer") from None

    def compute(self, work: Work) -> list[Outcome]:
        """Every (item, method) of ``work``: decode, group items by shape (a wrong-shaped item
        then fails alone), one forward for the predictions, then each method on the group.
        Cost: per item, each method's cost (``steps`` forward+backward passes for IG)."""
        import torch

        if self.failure is not None:
            raise self.failure
        outcomes: list[Outcome] = []
        groups: dict[tuple, list[tuple[Raw, tuple[str, ...], torch.Tensor]]] = {}
        for raw, methods in work:
            try:
                x = decode(raw, self.bundle.preprocess)
            except ItemError as e:
                outcomes += [Outcome(raw.key, m, label=raw.label, error=str(e)) for m in methods]
                continue
            groups.setdefault(tuple(x.shape), []).append((raw, methods, x))
        for shape, members in groups.items():
            outcomes += self._group(shape, members)
        return outcomes

    def _group(self, shape: tuple, members: list) -> list[Outcome]:
        import torch

        from .named import parse_target

        x = torch.stack([m[2] for m in members])
        try:
            with torch.inference_mode():
                logits = self.bundle.model(x)
            if logits.dim() != 2:
                raise ValueError(f"output shape {tuple(logits.shape)} is not (batch, classes)")
        except Exception as e:  # e.g. a wrong-shaped item: the model raises on it
            reason = f"model failed on input shape {shape}: {one_line(e)}"
            return [Outcome(raw.key, m, label=raw.label, error=reason)
                    for raw, methods, _ in members for m in methods]
        if self.settings.target is not None and self.target is None:
            self.target = parse_target(self.settings.target, self.bundle, logits.shape[1])
        predicted = logits.argmax(1)
        targets = predicted if self.target is None else torch.full_like(predicted, self.target)
        outcomes = []
        for method in dict.fromkeys(m for _, methods, _ in members for m in methods):
            rows = [i for i, (_, methods, _) in enumerate(members) if method in methods]
            outcomes += self._method(method, members, rows, x, predicted, targets)
        return outcomes

    def _method(self, method: str, members: list, rows: list[int], x, predicted, targets
                ) -> list[Outcome]:
        """``method`` on the items ``rows`` of a group, at once; if that raises, item by item,
        so that only the items it fails on fail."""
        try:
            result, seconds = self._attribute(method, x[rows], targets[rows])
            # a NaN result is a failed item, never a done one (whatever the method)
            check_finite(result.attributions.flatten(1), f"{method}'s attributions")
            if result.delta is not None:
                check_finite(result.delta, f"{method}'s completeness gap")
        except Exception as e:  # one method failing must not lose the others
            if len(rows) > 1:
                return [o for i in rows
                        for o in self._method(method, members, [i], x, predicted, targets)]
            raw = members[rows[0]][0]
            return [Outcome(raw.key, method, label=raw.label,
                            error=f"{method} failed: {one_line(e)}")]
        attr = result.neuron_totals() if method.startswith(LAYER_METHOD + "@") \
            else result.attributions
        out_delta = result.info.get("output_delta")
        return [Outcome(members[i][0].key, method, attr[j].detach().float().numpy(),
                        int(predicted[i]), int(targets[i]), members[i][0].label,
                        None if result.delta is None else float(result.delta[j]),
                        None if out_delta is None else float(out_delta[j]), seconds / len(rows))
                for j, i in enumerate(rows)]

    def _attribute(self, method: str, x, target):
        from . import registry

        if method.startswith(LAYER_METHOD + "@"):
            from .methods.conductance import LayerConductance

            start = time.perf_counter()
            result = LayerConductance(self.bundle.model, method.partition("@")[2]).attribute(
                x, target=target, steps=registry.fixed_steps(self.settings.steps))
            return result, time.perf_counter() - start
        return registry.run(method, self.bundle.model, x, target, self.settings.steps)


def run(model: str, data: str | Path, methods: str | Sequence[str] = "ig",
        out: str | Path = "pathattr-out", *, layer: str | Sequence[str] | None = None,
        steps: int | str = 32, target: int | str | None = None, weights: str | None = None,
        engine: str = "local", address: str | None = None, workers: int | None = None,
        batch_size: int | str = "auto", quiet: bool = False) -> RunResult:
    """Attribute every item of ``data`` (a directory of images or an NPZ, see
    ``pathattr.datasets.Dataset``) with each of ``methods`` (names of ``pathattr models``, or
    ``"ig,idg"``) and, per ``layer``, Neuron IG of its channels; results go to the store ``out``.

    ``model``: as ``--model`` (built-in name, module:factory, TorchScript file). ``target``: a
    class index or name for every item (default: each item's predicted class). ``engine``:
    ``"local"`` or ``"ray"`` (``address`` of a cluster, default: start a local one with
    ``workers`` CPUs; ``workers`` actors, default one per CPU). Running again with the same
    arguments resumes: items already done are skipped, failed ones retried. ``batch_size``:
    items per batch and per index transaction; "auto" is ``auto_batch_size`` of the data's
    size (a store being resumed keeps its own). Returns counts.
    Raises ``SettingError`` for bad arguments or a store made with other settings. Cost: each
    method's cost per pending item, plus one forward per item and batch of methods.
    """
    from .registry import parse_methods
    from .validate import check_out_dir

    start = time.perf_counter()
    names = parse_methods(methods if isinstance(methods, str) else ",".join(methods))
    layers = [layer] if isinstance(layer, str) else list(layer or ())
    names += [f"{LAYER_METHOD}@{name}" for name in layers]
    if engine not in ("local", "ray"):
        raise SettingError(f"expected local or ray, got {engine!r}", param="engine")
    if (batch_size != "auto" and (not isinstance(batch_size, int) or batch_size < 1)) or \
            (workers is not None and workers < 1) or (steps != "auto" and steps < 1):
        raise SettingError("must be positive", param="batch_size, workers, steps")
    try:
        dataset = Dataset(data)
    except (OSError, ValueError) as e:
        raise SettingError(str(e), param="data") from None
    if batch_size == "auto":
        batch_size = _stored_batch_size(out) or auto_batch_size(len(dataset.keys))
    # str(target): 3 from Python and "3" from the command line are the same run.
    settings = Settings(model, weights, data_id(data), steps,
                        None if target is None else str(target), batch_size)
    check_out_dir(out)
    try:
        store = Store(out, write=True)
    except (StoreBusy, BadStore) as e:
        raise SettingError(str(e), param="out") from None
    except (OSError, sqlite3.Error) as e:
        raise SettingError(f"cannot write a results store in {str(out)!r}: "
                           f"{one_line(e)}", param="out") from None
    with store:
        try:
            saved = store.settings()
        except BadStore as e:
            raise SettingError(str(e), param="out") from None
        if saved is None:
            store.save_settings(settings.identity())
        elif saved != settings.identity():
            changed = ", ".join(f"{k} {saved.get(k)!r} -> {v!r}"
                                for k, v in settings.identity().items() if saved.get(k) != v)
            raise SettingError(f"{str(out)!r} holds a run with other settings ({changed});"
                             f" resume with the same settings or choose another --out", param="out")
        done, corrupt = store.check()
        if corrupt:
            warnings.warn(f"{len(corrupt)} stored result(s) in {str(out)!r} failed verification "
                          f"and will be recomputed; first: {corrupt[0][0]} ({corrupt[0][1]}): "
                          f"{corrupt[0][2]}", stacklevel=2)
        damaged = {(k, m) for k, m, _ in corrupt}
        batches = []
        for i in range(0, len(dataset.keys), batch_size):
            keys = dataset.keys[i:i + batch_size]
            # A damaged result is recomputed with its whole batch, as first computed: batched
            # kernels round differently for other batch compositions.
            redo = {m for m in names if any((k, m) in damaged for k in keys)}
            todo = [(k, tuple(m for m in names if (k, m) not in done or m in redo))
                    for k in keys]
            todo = [t for t in todo if t[1]]
            if todo:
                batches.append(todo)
        pending = sum(len(wanted) for b in batches for _, wanted in b)  # (item, method)

        def work() -> Iterator[Work]:
            for batch in batches:
                raws = dataset.read([k for k, _ in batch])
                yield [(raw, wanted) for raw, (_, wanted) in zip(raws, batch)]

        from tqdm import tqdm

        counts = {"done": 0, "failed": 0}
        outcomes_of = (_local(settings, layers, work()) if engine == "local"
                       else _ray(settings, layers, work(), address, workers))
        with tqdm(total=pending, unit="result", disable=quiet, file=sys.stderr) as bar:
            for outcomes in outcomes_of:
                store.commit(outcomes)
                for o in outcomes:
                    counts["failed" if o.error else "done"] += 1
                bar.update(len(outcomes))
    skipped = len(dataset.keys) * len(names) - counts["done"] - counts["failed"]
    return RunResult(Path(out), counts["done"], counts["failed"], skipped,
                     time.perf_counter() - start, corrupt)


#: At most this many items per batch when the batch size is chosen for the user.
MAX_AUTO_BATCH = 16
#: ... and at least this many commits per run, so that a kill loses at most 1/20 of it.
MIN_COMMITS = 20


def auto_batch_size(n_items: int) -> int:
    """Items per batch for ``n_items``: ``ceil(n / MIN_COMMITS)``, between 1 and
    ``MAX_AUTO_BATCH`` (16 from 320 items on)."""
    return max(1, min(MAX_AUTO_BATCH, -(-n_items // MIN_COMMITS)))


def _stored_batch_size(out: str | Path) -> int | None:
    """The batch size of the store at ``out``, read without opening it for writing (None: no
    store, or none readable: the run then says what is wrong when it opens it)."""
    if not (Path(out) / "index.sqlite").is_file():
        return None
    try:
        with Store(out) as store:
            saved = store.settings() or {}
    except Exception:  # noqa: BLE001 -- the writing open below reports it properly
        return None
    size = saved.get("batch_size")
    return size if isinstance(size, int) and size > 0 else None


def _local(settings: Settings, layers: list[str], batches: Iterator[Work]
           ) -> Iterator[list[Outcome]]:
    worker = Worker(settings, layers)
    for work in batches:
        yield worker.compute(work)


def _ray(settings: Settings, layers: list[str], batches: Iterator[Work], address: str | None,
         workers: int | None) -> Iterator[list[Outcome]]:
    """Batches over Ray actors, two in flight per actor so none waits for the driver; results
    come back in completion order. Starts (and afterwards stops) a local cluster if this
    process is not connected to one."""
    try:
        import ray
    except ImportError:
        raise SettingError("ray: Ray is not installed; pip install 'pathattr[ray]'",
                           param="engine") \
            from None
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, num_cpus=workers if address is None else None,
                 include_dashboard=False, logging_level="warning")
    actors = []
    try:
        n = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        actor = ray.remote(num_cpus=1)(Worker)
        actors = [actor.remote(settings, layers) for _ in range(n)]
        free = actors * 2
        running: dict = {}
        for work in batches:
            if not free:
                yield _collect(ray, running, free)
            a = free.pop()
            running[a.compute.remote(work)] = a
        while running:
            yield _collect(ray, running, free)
    finally:
        for a in actors:
            ray.kill(a)
        if started:
            ray.shutdown()


def _collect(ray, running: dict, free: list) -> list[Outcome]:
    (ref,), _ = ray.wait(list(running), num_returns=1)
    free.append(running.pop(ref))
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:  # e.g. a bad --target: raise it as itself
        raise e.cause from None


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
    from . import viz

    results = Path(results)
    with Store(results) as store:
        settings = store.settings() or {}
        rows = store.rows()
        good, corrupt, sums, sample_attrs, keys = [], [], {}, [], []
        for row, a, reason in store.results(rows):
            if reason is not None:
                corrupt.append((str(row["key"]), str(row["method"]), reason))
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
    if corrupt:
        tables.append(viz.Table(("item", "method", "stored result fails verification"),
                                corrupt))
    data = {"settings": settings, "methods": per_method,
            "classes": {str(c): dict(zip(("predicted", "labelled", "correct"), v))
                        for c, v in classes.items()},
            "top_features": [dict(zip(("method", "rank", "feature", "mean_abs", "mean"), t))
                             for t in top_rows],
            "failures": [dict(zip(("key", "method", "error"), f)) for f in failures],
            "corrupt": [dict(zip(("key", "method", "reason"), c)) for c in corrupt]}
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
        from .zoo import class_name

        return class_name
    return lambda _c: ""


#: What a setting left unset means, in the report's words (not Python's ``None``).
_UNSET = {"target": "each item's predicted class", "layer": "none", "weights": "none",
          "labels": "none"}


def _setting(key: str, value: object) -> str:
    return _UNSET.get(key, "-") if value is None else str(value)


def _method_stats(done: list, failed: int, corrupt: int) -> dict:
    deltas = [abs(r["delta"]) for r in done if r["delta"] is not None]
    relative = [v for v in map(_relative_gap, done) if v is not None]
    seconds = [r["seconds"] for r in done if r["seconds"] is not None]
    return {"done": len(done), "failed": failed, "corrupt": corrupt,
            "mean_abs_delta": _mean(deltas), "mean_relative_delta": _mean(relative),
            "ms_per_item": None if not seconds else 1000 * _mean(seconds)}


def _relative_gap(row) -> float | None:
    """A stored row's ``|delta| / |F(x) - F(x')|``, or None for a method without a gap."""
    if row["delta"] is None or row["output_delta"] is None:
        return None
    return abs(row["delta"]) / max(abs(row["output_delta"]), 1e-12)


def _add_to_sums(sums: dict, method: str, a: np.ndarray) -> None:
    """Add one item to ``sums[method] = [sum |map|, sum map, n]``, if its map has the first
    one's shape; an input attribution's map sums its channels (a pixel's total), a layer's is
    per channel."""
    from .viz import attribution_map

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
    from .named import BUILTIN, load_model

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


def evaluate_results(results: str | Path, metrics: Sequence[str] = ("insertion", "deletion"),
                     curve_steps: int = 40, controls: bool = True, model: str | None = None,
                     weights: str | None = None, quiet: bool = False):
    """Score the input attributions of a store (``pathattr.evaluation``) over every item that
    every method completed (the comparisons are paired), with the target each was explained
    for; writes ``evaluation.json`` and ``evaluation.html`` into ``results``. The model is the
    run's when built in, else ``model`` / ``weights`` (code named in a results folder is never
    run). Returns ``(Evaluation, html path)``. Raises ``SettingError``. Cost: reading the
    attributions (a batch of items at a time) and the metrics' forward passes per item and
    method."""
    import torch
    from tqdm import tqdm

    from .evaluation import Evaluator, write_evaluation
    from .named import BUILTIN, load_model

    results = Path(results)
    try:
        store = Store(results)
    except FileNotFoundError as e:
        raise SettingError(str(e), param="results") from None
    with store:
        settings = store.settings() or {}
        rows = [r for r in store.rows("status = 'done'")
                if not str(r["method"]).startswith(LAYER_METHOD + "@")]
        methods = list(dict.fromkeys(r["method"] for r in rows))
        by_key: dict[str, list] = {}
        for r in rows:
            by_key.setdefault(r["key"], []).append(r)
        keys = [k for k, rs in by_key.items() if len(rs) == len(methods)]
        if not keys:
            raise SettingError(f"{str(results)!r} holds no item that every input "
                               f"method ({', '.join(methods) or 'none'}) completed",
                               param="results")
        if model is None:
            model, weights = settings.get("model"), settings.get("weights")
            if model not in BUILTIN:
                raise SettingError(f"the run's model {model!r} is not built in, and "
                                   f"code named in a results folder is never run: give one",
                                   param="model")
        bundle = load_model(model, weights)
        dataset = Dataset(settings["data"])
        evaluator = Evaluator(bundle.model, methods, metrics, controls=controls,
                              points=curve_steps)
        with tqdm(total=len(keys), unit="item", disable=quiet, file=sys.stderr) as bar:
            for i in range(0, len(keys), 16):
                batch = keys[i:i + 16]
                attrs: dict[str, dict[str, np.ndarray]] = {}
                for row, a, reason in store.results([r for k in batch for r in by_key[k]]):
                    if reason is not None:
                        raise SettingError(f"{row['key']} ({row['method']}): "
                                           f"{reason}; rerun `pathattr run` to recompute it",
                                           param="results")
                    attrs.setdefault(row["key"], {})[row["method"]] = a
                for raw in dataset.read(batch):
                    x = decode(raw, bundle.preprocess)[None]
                    gaps = {r["method"]: _relative_gap(r) for r in by_key[raw.key]}
                    evaluator.add(raw.key, x, {m: torch.as_tensor(a) for m, a in
                                               attrs[raw.key].items()},
                                  int(by_key[raw.key][0]["target"]), gaps)
                    bar.update()
    page = write_evaluation(evaluator.result, results, f"pathattr evaluate: {results.name}",
                            [("model", str(model)), ("data", str(settings.get("data"))),
                             ("steps", str(settings.get("steps")))])
    return evaluator.result, page
