"""Interleaved timing, peak memory in a fresh process, and JSON + markdown output."""

from __future__ import annotations

import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch


def interleaved(fns: dict[str, Callable[[], object]], reps: int) -> dict[str, list[float]]:
    """Run every function once per round, ``reps`` rounds, after one warm-up round.

    Interleaving spreads the machine's drift (other load, thermal) over all contestants, so
    ratios stay meaningful on a noisy machine. Returns the seconds of each run.
    """
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return times


def median(ts: list[float]) -> float:
    return statistics.median(ts)


def peak_rss_mb(module: str, name: str) -> float:
    """Extra peak resident memory (MiB) of one run of ``name`` in a fresh process.

    The child calls ``memory_probe(module, name)``: it loads ``<module>.workload()``, builds
    ``<module>.contestants(*workload)``, records the peak, runs the contestant once and prints
    the increase.
    """
    out = subprocess.run([sys.executable, "-c",
                          f"from benchmarks.common import memory_probe; "
                          f"print(memory_probe({module!r}, {name!r}))"],
                         capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def memory_probe(module: str, name: str) -> float:
    """In this process: the peak-memory increase (MiB) of one run of contestant ``name``."""
    import importlib

    torch.set_num_threads(2)
    m = importlib.import_module(module)
    fns = m.contestants(*m.workload())
    before = rss_mb()
    fns[name]()
    return rss_mb() - before


def rss_mb() -> float:
    """Peak resident memory of this process so far (MiB).

    ``VmHWM`` of /proc, not ``ru_maxrss``: Linux carries ``ru_maxrss`` across ``exec``, so a
    child started by a big parent would report the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def environment() -> dict:
    import captum
    return {"python": platform.python_version(), "torch": torch.__version__,
            "captum": captum.__version__, "threads": torch.get_num_threads(),
            "machine": platform.machine(), "cpus": __import__("os").cpu_count()}


def write(out_dir: Path, name: str, data: dict, table: str) -> None:
    """Write ``<name>.json`` (every number) and ``<name>.md`` (the table) to ``out_dir``, and
    the table into its section of ``docs/benchmarks.md`` (``publish``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps({**data, "env": environment()}, indent=2))
    (out_dir / f"{name}.md").write_text(table)
    publish(name, table)
    print(table)


BENCHMARKS_MD = Path(__file__).parents[1] / "docs" / "benchmarks.md"


def publish(name: str, table: str, doc: Path = BENCHMARKS_MD) -> None:
    """Replace benchmark ``name``'s section of ``doc`` (between ``<!-- bench:NAME -->`` and
    ``<!-- /bench:NAME -->``; appended when there is none) with ``table``, dated today and
    with the commit measured. Written to a temporary file, then renamed."""
    import datetime
    import os
    import re
    import subprocess

    key = name.replace("_", "-")
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, cwd=doc.parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    old = doc.read_text() if doc.exists() else "# Benchmarks\n"
    found = re.search(rf"<!-- bench:{re.escape(key)} -->\n## ([^\n]*)", old)
    title = found.group(1) if found else key
    section = (f"<!-- bench:{key} -->\n## {title}\n\nMeasured "
               f"{datetime.date.today().isoformat()} at commit {commit}.\n\n"
               f"{table.strip()}\n<!-- /bench:{key} -->")
    pattern = re.compile(rf"<!-- bench:{re.escape(key)} -->.*?<!-- /bench:{re.escape(key)} -->",
                         re.S)
    new = pattern.sub(lambda _: section, old) if pattern.search(old) else \
        old.rstrip() + "\n\n" + section + "\n"
    tmp = doc.with_name(f".{doc.name}.tmp")
    tmp.write_text(new)
    os.replace(tmp, doc)
