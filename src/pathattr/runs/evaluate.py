"""``evaluate_results``: score a store's input attributions (``pathattr.evaluation``)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..datasets import Dataset, decode
from ..errors import SettingError
from ..files import claim
from ..store import Store
from .summary import relative_gap
from .workers import LAYER_METHOD


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

    from ..evaluation import Evaluator, write_evaluation
    from ..named import BUILTIN, load_model

    results = Path(results)
    try:
        store = Store(results)
    except FileNotFoundError as e:
        raise SettingError(str(e), param="results") from None
    claim(results, "evaluation", "evaluate", write=False)  # before any work
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
        elif model == settings.get("model") and weights is None and settings.get("weights"):
            # the same architecture without the run's weights would score another model
            raise SettingError(f"the run used {model} with weights {settings['weights']!r}; "
                               f"pass them (or the weights you mean)", param="weights")
        bundle = load_model(model, weights)
        dataset = Dataset(settings["data"])
        evaluator = Evaluator(bundle.model, methods, metrics, controls=controls,
                              points=curve_steps)
        with tqdm(total=len(keys), unit="item", disable=quiet, file=sys.stderr) as bar:
            for i in range(0, len(keys), 16):
                batch = keys[i:i + 16]
                attrs: dict[str, dict[str, np.ndarray]] = {}
                for row, a, reason in store.results([r for k in batch for r in by_key[k]]):
                    if a is None:  # store.results gives an attribution or the reason why not
                        raise SettingError(f"{row['key']} ({row['method']}): "
                                           f"{reason}; rerun `pathattr run` to recompute it",
                                           param="results")
                    attrs.setdefault(row["key"], {})[row["method"]] = a
                for raw in dataset.read(batch):
                    x = decode(raw, bundle.preprocess)[None]
                    gaps = {r["method"]: relative_gap(r) for r in by_key[raw.key]}
                    evaluator.add(raw.key, x, {m: torch.as_tensor(a) for m, a in
                                               attrs[raw.key].items()},
                                  int(by_key[raw.key][0]["target"]), gaps)
                    bar.update()
    claim(results, "evaluation", "evaluate")
    page = write_evaluation(evaluator.result, results, f"pathattr evaluate: {results.name}",
                            [("model", str(model)), ("data", str(settings.get("data"))),
                             ("steps", str(settings.get("steps")))])
    return evaluator.result, page
