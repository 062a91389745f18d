"""The per-image pipeline behind ``explain``, ``evaluate`` and ``neurons``: attributions by each
method, optionally insertion/deletion curves and a layer's top neurons, written as PNGs,
``attributions.npz``, ``summary.json`` and a self-contained ``report.html`` per image."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from .. import registry, viz
from ..call import model_device_dtype
from ..errors import one_line, printable
from ..evaluation import Evaluation, Evaluator
from ..files import claim, make_dirs, safe_name, write_file, write_npz
from ..layers import LayerNotExecuted, Tap, resolve_layer, tap_layers
from ..named import ModelBundle, parse_target
from ..viz.report import map_cells
from . import UsageError


@dataclass
class Options:
    """What to compute and where to write it (from the command line)."""

    methods: list[str]
    out: Path
    steps: int | str            # "auto": registry.run's meaning
    target: str | None
    curves: bool
    curve_steps: int | None     # used with curves
    layer: str | None
    top: int                    # used with layer
    quiet: bool
    metrics: tuple[str, ...] = ("insertion", "deletion")  # used with curves
    controls: bool = True       # each method's inverse ranking and a random ranking
    command: str = "explain"    # other commands write to a subfolder of the image's folder
    sources: tuple[str, ...] = ()  # each image's identity (its resolved path): who owns its folder


@dataclass
class Outcome:
    """One image's results, kept for the printed summary across images."""

    label: str
    report: Path
    explained: str = ""         # the class explained, in words
    methods: viz.Table | None = None
    curves: viz.Table | None = None
    neurons: viz.Table | None = None
    failures: list[str] = field(default_factory=list)


def run(bundle: ModelBundle, images: list[tuple[str, Image.Image]], opts: Options
        ) -> tuple[list[Outcome], Evaluation | None]:
    """Explain every image; returns one ``Outcome`` each and, with ``curves``, the
    ``Evaluation`` of the methods over all images (those where every method ran). A method
    that fails is reported in its outcome and the others still run. Raises ``UsageError`` for
    a bad ``--layer`` or ``--target``. Cost: per image, each method's cost, plus ``2 *
    (curve_steps + 1)`` forward passes per method with ``curves`` (twice with the controls,
    plus ROAD's when asked), plus a Neuron IG and a DeepLIFT pass and ``2 * top + 4`` forward
    passes with ``layer``."""
    if opts.layer is not None:
        _check_layer(bundle, images[0][1] if images else None, opts.layer)
    per_image = len(opts.methods) + int(opts.curves) + int(opts.layer is not None)
    bar = tqdm(total=len(images) * per_image, disable=opts.quiet, file=sys.stderr,
               unit="task", leave=False)
    # the aggregate outputs' names are taken: an input named "evaluation.html" gets another
    used: set[str] = {"evaluation.html", "evaluation.json", "text", "generation", "report.html",
                      "summary.json"}
    outcomes = []
    evaluator = None
    if opts.curves and opts.methods:
        evaluator = Evaluator(bundle.model, opts.methods, opts.metrics,
                              controls=opts.controls, points=opts.curve_steps)
    directories = []
    for label, _ in images:
        directory = opts.out / safe_name(label, used)
        if opts.command != "explain":  # never replaces what explain wrote for the image
            directory = directory / opts.command
        directories.append(directory)
    # another input of the same name (d1/x.png, d2/x.png) never replaces these: checked for
    # every image before any work, recorded once an image's outputs are written
    owners = dict(zip(directories, opts.sources))
    for directory, source in owners.items():
        claim(directory.parent, directory.name, source, write=False)
    with bar:
        for (label, img), directory in zip(images, directories):
            make_dirs(directory)
            outcomes.append(_one(bundle, label, img, opts, directory, bar, evaluator))
            if directory in owners:
                claim(directory.parent, directory.name, owners[directory])
    return outcomes, evaluator.result if evaluator and evaluator.result.inputs else None


def _check_layer(bundle: ModelBundle, img: Image.Image | None, layer: str) -> None:
    """``UsageError`` naming ``--layer`` unless it names a layer that runs exactly once in a
    forward of the first image: checked before any work. Cost: one forward pass."""
    try:
        resolve_layer(bundle.model, layer)
    except ValueError as e:
        raise UsageError(f"--layer: {e}") from None
    try:
        x = bundle.preprocess(img)[None] if img is not None else None
    except ValueError:
        return  # the image's own error, reported as IMAGE's where it is explained
    if x is None:
        return
    device, dtype = model_device_dtype(bundle.model)
    with tap_layers(bundle.model, [Tap(layer)]) as (reading,), torch.inference_mode():
        bundle.model(x.to(device=device, dtype=dtype))
        try:
            reading.check()
        except (LayerNotExecuted, RuntimeError) as e:  # never run, or run twice
            raise UsageError(f"--layer: {e}") from None


def _one(bundle: ModelBundle, label: str, img: Image.Image, opts: Options, directory: Path,
         bar: tqdm, evaluator: Evaluator | None) -> Outcome:
    model = bundle.model
    try:
        x = bundle.preprocess(img)[None]
    except ValueError as e:  # e.g. an aspect ratio that resizing would blow up
        raise UsageError(f"IMAGE: {label}: {e}") from None
    try:
        with torch.inference_mode():
            logits = model(x)
    except Exception as e:  # the model wants another input: say what it was given
        how = f" ({bundle.preprocessing})" if bundle.preprocessing else ""
        raise UsageError(f"--model: {bundle.name} failed on the input {tuple(x.shape)}{how}: "
                         f"{one_line(e)}; choose another preprocessing with --size, --mean, "
                         f"--std") from None
    if logits.dim() != 2 or logits.shape[0] != 1:
        raise UsageError(f"--model: output has shape {tuple(logits.shape)}, expected "
                         f"(batch, classes) logits")
    probs = logits.softmax(-1)[0]
    given = parse_target(opts.target, bundle, probs.numel())
    target = int(probs.argmax()) if given is None else given
    shown = bundle.display(x[0])
    top5 = probs.topk(min(5, probs.numel()))
    prediction = viz.Table(("class", "name", "probability"), [
        (int(i), bundle.class_name(int(i)), f"{float(p):.3f}")
        for p, i in zip(top5.values, top5.indices, strict=True)])
    summary = {
        "image": label, "model": bundle.name, "steps": opts.steps,
        "prediction": {"class": int(probs.argmax()), "name": bundle.class_name(int(probs.argmax())),
                       "probability": float(probs.max())},
        "target": {"class": target, "name": bundle.class_name(target),
                   "probability": float(probs[target]), "logit": float(logits[0, target])},
    }
    if opts.methods:
        summary["methods"] = {}
    how = "predicted" if given is None else "given"
    outcome = Outcome(label, directory / "report.html",
                      f"class {target} {bundle.class_name(target)!r} ({how}, probability "
                      f"{float(probs[target]):.3f})")
    report = viz.Report(
        title=f"pathattr: {label}",
        facts=[("model", bundle.name), ("target", f"{target} {bundle.class_name(target)}"),
               ("steps", str(opts.steps)), ("baseline", "zeros (the model's input space)")],
        input_png=viz.array_png(shown), prediction=prediction)

    attrs: dict[str, torch.Tensor] = {}
    for name in opts.methods:
        bar.set_description(f"{printable(label)}: {name}")
        panel, attr = _method(name, model, x, target, opts.steps, shown)
        summary["methods"][name] = {"delta": panel.delta, "relative_delta": panel.relative,
                                    "seconds": panel.seconds, "error": panel.error}
        report.methods.append(panel)
        if attr is None or panel.png is None:
            outcome.failures.append(f"{name} failed on {label}: {panel.error}")
        else:
            attrs[name] = attr
            write_file(directory / f"{name}.png", panel.png)
        bar.update()
    if opts.methods:
        outcome.methods = viz.Table(("method", "delta", "relative", "seconds"), [
            (p.name, _fmt(p.delta), _fmt(p.relative, "{:.1%}"), _fmt(p.seconds, "{:.1f}"))
            for p in report.methods if not p.error])
    if attrs:
        captions = {p.name: p.caption(short=True) for p in report.methods if not p.error}
        grid = viz.method_grid(shown, attrs, captions)
        write_file(directory / "grid.png", viz.figure_png(grid))
        write_npz(directory / "attributions.npz", input=x[0].numpy(),
                            **{k: v.numpy() for k, v in attrs.items()})
    if evaluator is not None and attrs:
        bar.set_description(f"{printable(label)}: {', '.join(opts.metrics)}")
        gaps = {p.name: p.relative for p in report.methods if not p.error}
        if len(attrs) == len(opts.methods):
            curves = evaluator.add(label, x, attrs, target, gaps)
        else:  # an image where a method failed: its curves, but not in the comparison
            one = Evaluator(model, list(attrs), opts.metrics, controls=opts.controls,
                            points=opts.curve_steps)
            curves = one.add(label, x, attrs, target)
        summary["curves"], outcome.curves, report.curves_png = _curves(curves, opts.metrics)
        report.curves = outcome.curves
        write_file(directory / "curves.png", report.curves_png)
        bar.update()
    if opts.layer is not None:
        bar.set_description(f"{printable(label)}: neurons of {opts.layer}")
        from .neurons import top_neurons

        found = top_neurons(model, x, target, opts.layer, opts.top,
                            registry.fixed_steps(opts.steps))
        summary["neurons"] = found.summary
        outcome.neurons = report.neurons = found.table
        report.neurons_png, report.notes = found.png, found.notes
        outcome.failures.extend(f"{f} on {label}" for f in found.failures)
        write_file(directory / "neurons.png", found.png)
        bar.update()
    write_file(directory / "summary.json", json.dumps(summary, indent=2) + "\n")
    report.write(outcome.report)
    return outcome


def _fmt(v: float | None, pattern: str = "{:+.3g}") -> str:
    return "-" if v is None else pattern.format(v)


def _method(name: str, model, x: torch.Tensor, target: int, steps: int | str,
            shown: np.ndarray) -> tuple[viz.MethodPanel, torch.Tensor | None]:
    """Run one method; a failure becomes the panel's ``error`` (one line) instead of raising."""
    try:
        start = time.perf_counter()
        result = registry.attribute(name, model, x, target, steps)
        seconds = time.perf_counter() - start
    except Exception as e:  # one method's failure must not lose the others' results
        return viz.MethodPanel(name, error=one_line(e)), None
    attr = result.tensor[0].detach().float().cpu()
    delta = relative = None
    if result.delta is not None:
        delta = float(result.delta[0])
        if "output_delta" in result.info:
            relative = float(result.relative_delta()[0])
    png = viz.array_png(viz.overlay(shown, attr))
    return viz.MethodPanel(name, png, delta, relative, seconds,
                           values=map_cells(viz.attribution_map(attr)),
                           gap=registry.entry(name).gap), attr


def _curves(curves: dict, metrics: tuple[str, ...]) -> tuple[dict, viz.Table, bytes]:
    """One image's AUCs per method and control (``Evaluator.add``'s curves): the summary
    entry, the table (best first by the first metric) and the plot."""
    entry = {row: {f"{m}_auc": float(c.auc[0]) for m, c in by.items()}
             for row, by in curves.items()}
    first = metrics[0] + "_auc"
    sign = -1 if viz.KINDS[metrics[0]][1] == "higher" else 1
    order = sorted(entry, key=lambda row: sign * entry[row].get(first, sign * float("inf")))
    table = viz.Table(("method", *(f"{m} AUC ({viz.KINDS[m][1]} is better)" for m in metrics)),
                      [(row, *(f"{entry[row][m + '_auc']:.3f}" if m + "_auc" in entry[row]
                               else "-" for m in metrics)) for row in order])
    shown = {row: {m: _first(c) for m, c in by.items()} for row, by in curves.items()}
    return entry, table, viz.figure_png(viz.curves_figure(shown, kinds=metrics))


def _first(curve):
    """The first example's curve (the plot draws one line per method)."""
    return type(curve)(curve.fractions, curve.scores[0], curve.auc[0])
