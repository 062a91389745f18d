"""``pathattr.run``: list the items, skip those the store holds, cut the rest into batches
and hand them to an engine (``workers``), committing one transaction per batch."""

from __future__ import annotations

import sqlite3
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..datasets import Dataset, data_id
from ..errors import SettingError, one_line
from ..store import BadStore, Store, StoreBusy
from .workers import LAYER_METHOD, Settings, Work, check_address, run_local, run_ray


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


def run(model: str, data: str | Path, methods: str | Sequence[str] = "ig",
        out: str | Path = "pathattr-out", *, layer: str | Sequence[str] | None = None,
        steps: int | str = "auto", target: int | str | None = None, weights: str | None = None,
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
    from ..registry import parse_methods
    from ..validate import check_out_dir

    start = time.perf_counter()
    names = parse_methods(methods if isinstance(methods, str) else ",".join(methods))
    layers = [layer] if isinstance(layer, str) else list(layer or ())
    twice = sorted({n for n in layers if layers.count(n) > 1})
    if twice:
        raise SettingError(f"lists {', '.join(twice)} more than once", param="layer")
    names += [f"{LAYER_METHOD}@{name}" for name in layers]
    if engine not in ("local", "ray"):
        raise SettingError(f"expected local or ray, got {engine!r}", param="engine")
    if (batch_size != "auto" and (not isinstance(batch_size, int) or batch_size < 1)) or \
            (workers is not None and workers < 1) or \
            (steps != "auto" and (not isinstance(steps, int) or steps < 1)):
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
    if engine == "ray":
        check_address(address)  # before the store: an unreachable cluster leaves nothing
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
        missing = store.missing()
        if missing:
            # rows deleted from the index: which is unknown, so every item not done is redone
            # with its whole batch, as first computed (bit-equal to the deleted results)
            warnings.warn(f"{missing} result row(s) that {str(out)!r} committed are missing "
                          f"from its index (deleted by hand or by another program); their "
                          f"items will be recomputed", stacklevel=2)
            damaged |= {(k, m) for k in dataset.keys for m in names if (k, m) not in done}
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
        outcomes_of = (run_local(settings, layers, work()) if engine == "local"
                       else run_ray(settings, layers, work(), address, workers))
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
