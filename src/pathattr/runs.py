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
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .datasets import Dataset, ItemError, Raw, decode, first_line
from .errors import SettingError
from .store import Outcome, Store, StoreBusy

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

    def identity(self) -> dict:
        return asdict(self)


@dataclass
class RunResult:
    """``done`` / ``failed``: (item, method) pairs computed by this call; ``skipped``: pairs the
    store already held; ``seconds``: wall time of this call."""

    out: Path
    done: int
    failed: int
    skipped: int
    seconds: float


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
        from .models import load_model

        self.bundle = load_model(self.settings.model, self.settings.weights)
        for layer in layers:
            try:
                resolve_layer(self.bundle.model, layer)
            except ValueError as e:
                raise SettingError(f"--layer: {e}") from None

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

        from .models import parse_target

        x = torch.stack([m[2] for m in members])
        try:
            with torch.inference_mode():
                logits = self.bundle.model(x)
            if logits.dim() != 2:
                raise ValueError(f"output shape {tuple(logits.shape)} is not (batch, classes)")
        except Exception as e:  # e.g. a wrong-shaped item: the model raises on it
            reason = f"model failed on input shape {shape}: {type(e).__name__}: {first_line(e)}"
            return [Outcome(raw.key, m, label=raw.label, error=reason)
                    for raw, methods, _ in members for m in methods]
        if self.settings.target is not None and self.target is None:
            self.target = parse_target(self.settings.target, self.bundle, logits.shape[1])
        predicted = logits.argmax(1)
        targets = predicted if self.target is None else torch.full_like(predicted, self.target)
        outcomes = []
        for method in dict.fromkeys(m for _, methods, _ in members for m in methods):
            rows = [i for i, (_, methods, _) in enumerate(members) if method in methods]
            try:
                result, seconds = self._attribute(method, x[rows], targets[rows], logits.shape[1])
            except Exception as e:  # one method failing must not lose the others
                reason = f"{method} failed: {type(e).__name__}: {first_line(e)}"
                outcomes += [Outcome(members[i][0].key, method, label=members[i][0].label,
                                     error=reason) for i in rows]
                continue
            attr = result.neuron_totals() if method.startswith(LAYER_METHOD + "@") \
                else result.attributions
            out_delta = result.info.get("output_delta")
            for j, i in enumerate(rows):
                outcomes.append(Outcome(
                    members[i][0].key, method, attr[j].detach().float().numpy(),
                    int(predicted[i]), int(targets[i]), members[i][0].label,
                    None if result.delta is None else float(result.delta[j]),
                    None if out_delta is None else float(out_delta[j]), seconds / len(rows)))
        return outcomes

    def _attribute(self, method: str, x, target, n_classes: int):
        from . import registry

        if method.startswith(LAYER_METHOD + "@"):
            from .methods.conductance import LayerConductance

            start = time.perf_counter()
            result = LayerConductance(self.bundle.model, method.partition("@")[2]).attribute(
                x, target=target, steps=self.settings.steps)
            return result, time.perf_counter() - start
        return registry.run(method, self.bundle.model, x, target, self.settings.steps, n_classes)


def run(model: str, data: str | Path, methods: str | Sequence[str] = "ig",
        out: str | Path = "pathattr-out", *, layer: str | Sequence[str] | None = None,
        steps: int = 32, target: int | str | None = None, weights: str | None = None,
        engine: str = "local", address: str | None = None, workers: int | None = None,
        batch_size: int = 16, quiet: bool = False) -> RunResult:
    """Attribute every item of ``data`` (a directory of images or an NPZ, see
    ``pathattr.datasets.Dataset``) with each of ``methods`` (names of ``pathattr models``, or
    ``"ig,idg"``) and, per ``layer``, Neuron IG of its channels; results go to the store ``out``.

    ``model``: as ``--model`` (built-in name, module:factory, TorchScript file). ``target``: a
    class index or name for every item (default: each item's predicted class). ``engine``:
    ``"local"`` or ``"ray"`` (``address`` of a cluster, default: start a local one with
    ``workers`` CPUs; ``workers`` actors, default one per CPU). Running again with the same
    arguments resumes: items already done are skipped, failed ones retried. Returns counts.
    Raises ``SettingError`` for bad arguments or a store made with other settings. Cost: each
    method's cost per pending item, plus one forward per item and batch of methods.
    """
    from .registry import parse_methods

    start = time.perf_counter()
    names = parse_methods(methods if isinstance(methods, str) else ",".join(methods))
    layers = [layer] if isinstance(layer, str) else list(layer or ())
    names += [f"{LAYER_METHOD}@{name}" for name in layers]
    if engine not in ("local", "ray"):
        raise SettingError(f"--engine: expected local or ray, got {engine!r}")
    if batch_size < 1 or (workers is not None and workers < 1) or steps < 1:
        raise SettingError("--batch-size, --workers, --steps: must be positive")
    try:
        dataset = Dataset(data)
    except (OSError, ValueError) as e:
        raise SettingError(f"--data: {e}") from None
    # str(target): 3 from Python and "3" from the command line are the same run.
    settings = Settings(model, weights, str(Path(data).resolve()), steps,
                        None if target is None else str(target))
    try:
        store = Store(out, write=True)
    except StoreBusy as e:
        raise SettingError(f"--out: {e}") from None
    with store:
        saved = store.settings()
        if saved is None:
            store.save_settings(settings.identity())
        elif saved != settings.identity():
            changed = ", ".join(f"{k} {saved.get(k)!r} -> {v!r}"
                                for k, v in settings.identity().items() if saved.get(k) != v)
            raise SettingError(f"--out: {str(out)!r} holds a run with other settings ({changed});"
                             f" resume with the same settings or choose another --out")
        done = store.done()
        batches = []
        for i in range(0, len(dataset.keys), batch_size):
            todo = [(k, tuple(m for m in names if (k, m) not in done))
                    for k in dataset.keys[i:i + batch_size]]
            todo = [t for t in todo if t[1]]
            if todo:
                batches.append(todo)
        pending = sum(len(b) for b in batches)

        def work() -> Iterator[Work]:
            for batch in batches:
                raws = dataset.read([k for k, _ in batch])
                yield [(raw, wanted) for raw, (_, wanted) in zip(raws, batch)]

        from tqdm import tqdm

        counts = {"done": 0, "failed": 0}
        outcomes_of = (_local(settings, layers, work()) if engine == "local"
                       else _ray(settings, layers, work(), address, workers))
        with tqdm(total=pending, unit="item", disable=quiet, file=sys.stderr) as bar:
            for outcomes in outcomes_of:
                store.commit(outcomes)
                for o in outcomes:
                    counts["failed" if o.error else "done"] += 1
                bar.update(len({o.key for o in outcomes}))
    skipped = len(dataset.keys) * len(names) - counts["done"] - counts["failed"]
    return RunResult(Path(out), counts["done"], counts["failed"], skipped,
                     time.perf_counter() - start)


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
        raise SettingError("--engine ray: Ray is not installed; pip install 'pathattr[ray]'") \
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


def summarize(results: str | Path, sample: int = 4, top: int = 10) -> Summary:
    """Aggregate a store: per method the done and failed counts, mean |delta|, mean relative
    |delta| and time per item; per class the predicted (and, with labels, true) counts; the
    ``top`` features (pixels, or channels for layer methods) by mean |attribution| over the
    dataset; the failures. Writes ``summary.json`` and ``report.html`` (the aggregates plus
    heatmaps of the first ``sample`` items) into ``results``. Raises ``FileNotFoundError`` if
    there is no store. Cost: reading every attribution once, and loading the model to draw
    the sample over its inputs."""
    from . import viz

    results = Path(results)
    with Store(results) as store:
        settings = store.settings() or {}
        rows = store.rows()
        methods = list(dict.fromkeys(r["method"] for r in rows))
        per_method = {m: _method_stats([r for r in rows if r["method"] == m]) for m in methods}
        sums = {m: _feature_sums(store, [r for r in rows if r["method"] == m]) for m in methods}
        keys = list(dict.fromkeys(r["key"] for r in rows if r["status"] == "done"))[:sample]
        shown = store.attributions(r for r in rows if r["key"] in keys)
        sample_attrs = [(r["key"], r["method"], a) for r, a in shown]
    classes = _class_counts(rows)
    top_rows = []
    for m, (total_abs, total, n) in sums.items():
        if n == 0:
            continue
        mean_abs, mean = total_abs.ravel() / n, total.ravel() / n
        for rank, f in enumerate(np.argsort(-mean_abs, kind="stable")[:top], 1):
            where = tuple(int(i) for i in np.unravel_index(f, total_abs.shape))
            name = f"channel {f}" if m.startswith(LAYER_METHOD + "@") else f"pixel {where}"
            top_rows.append((m, rank, name, f"{mean_abs[f]:.4g}", f"{mean[f]:+.4g}"))
    failures = [(r["key"], r["method"], r["error"]) for r in rows if r["status"] == "failed"]
    tables = [
        viz.Table(("method", "done", "failed", "mean |delta|", "mean |delta| / |dF|",
                   "ms per item"),
                  [(m, s["done"], s["failed"], _fmt(s["mean_abs_delta"]),
                    _fmt(s["mean_relative_delta"], "{:.2%}"), _fmt(s["ms_per_item"], "{:.1f}"))
                   for m, s in per_method.items()]),
        viz.Table(("class", "predicted", "labelled", "correct"),
                  [(c, *v) for c, v in sorted(classes.items())]),
        viz.Table(("method", "rank", "feature", "mean |attribution|", "mean attribution"),
                  top_rows),
    ]
    if failures:
        tables.append(viz.Table(("item", "method", "failure"), failures))
    data = {"settings": settings, "methods": per_method,
            "classes": {str(c): dict(zip(("predicted", "labelled", "correct"), v))
                        for c, v in classes.items()},
            "top_features": [dict(zip(("method", "rank", "feature", "mean_abs", "mean"), t))
                             for t in top_rows],
            "failures": [dict(zip(("key", "method", "error"), f)) for f in failures]}
    (results / "summary.json").write_text(json.dumps(data, indent=2) + "\n")
    panels = [viz.MethodPanel(f"{m}: mean |attribution|, {n} items",
                              viz.array_png(viz.heatmap(a / n, signed=False)))
              for m, (a, _, n) in sums.items()
              if n and not m.startswith(LAYER_METHOD + "@")]
    images = _sample_images(settings, keys)
    for key, m, a in sample_attrs:
        if m.startswith(LAYER_METHOD + "@"):
            continue
        picture = viz.overlay(images[key], a) if key in images else viz.heatmap(a)
        panels.append(viz.MethodPanel(f"{key}: {m}", viz.array_png(picture)))
    report = viz.Report(
        title=f"pathattr run: {results.name}",
        facts=[*((k, str(v)) for k, v in settings.items()),
               *((m, f"{s['done']} done, {s['failed']} failed, mean |delta| "
                  f"{_fmt(s['mean_abs_delta'])}") for m, s in per_method.items())],
        prediction=tables[1], methods=panels, neurons=tables[2],
        notes=[f"{k} ({m}) failed: {e}" for k, m, e in failures[:20]])
    return Summary(tables, data, report.write(results / "report.html"))


def _method_stats(rows: list) -> dict:
    done = [r for r in rows if r["status"] == "done"]
    deltas = [abs(r["delta"]) for r in done if r["delta"] is not None]
    relative = [abs(r["delta"]) / max(abs(r["output_delta"]), 1e-12) for r in done
                if r["delta"] is not None and r["output_delta"] is not None]
    seconds = [r["seconds"] for r in done if r["seconds"] is not None]
    return {"done": len(done), "failed": len(rows) - len(done),
            "mean_abs_delta": _mean(deltas), "mean_relative_delta": _mean(relative),
            "ms_per_item": None if not seconds else 1000 * _mean(seconds)}


def _feature_sums(store: Store, rows: list) -> tuple[np.ndarray | None, np.ndarray | None, int]:
    """``(sum |map|, sum map, n)`` over the done items whose map has the first one's shape;
    an input attribution's map sums its channels (a pixel's total), a layer's is per channel."""
    from .viz import attribution_map

    total_abs = total = None
    n = 0
    for _, a in store.attributions(rows):
        m = attribution_map(a) if a.ndim == 3 else a
        if total is None:
            total_abs, total = np.zeros(m.shape), np.zeros(m.shape)
        if m.shape == total.shape:
            total_abs += np.abs(m)
            total += m
            n += 1
    return total_abs, total, n


def _class_counts(rows: list) -> dict[int, list[int]]:
    """class -> [predicted, labelled, correct], one vote per item (not per method)."""
    counts: dict[int, list[int]] = {}
    seen = set()
    for r in rows:
        if r["status"] != "done" or r["key"] in seen:
            continue
        seen.add(r["key"])
        counts.setdefault(r["prediction"], [0, 0, 0])[0] += 1
        if r["label"] is not None:
            counts.setdefault(r["label"], [0, 0, 0])[1] += 1
            counts[r["label"]][2] += int(r["label"] == r["prediction"])
    return counts


def _sample_images(settings: dict, keys: list[str]) -> dict[str, np.ndarray]:
    """The sample's inputs as the model saw them, for overlays; empty, with a warning saying
    why, if the data or model is no longer loadable (the report then shows bare heatmaps)."""
    try:
        from .models import load_model

        bundle = load_model(settings["model"], settings.get("weights"))
        raws = Dataset(settings["data"]).read(keys)
        return {r.key: bundle.display(decode(r, bundle.preprocess)) for r in raws}
    except Exception as e:  # the report is still useful without the pictures
        warnings.warn(f"summarize: report without input images: {first_line(e)}", stacklevel=2)
        return {}


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _fmt(v: float | None, pattern: str = "{:.4g}") -> str:
    return "-" if v is None else pattern.format(v)
