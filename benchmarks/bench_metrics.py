"""Insertion and deletion of 12 methods' maps on one 224 px photo with EfficientNet-Lite0 (what
``make demo`` computes, without the controls), at equal resolution (41 points per curve):
forward passes per curve, seconds per forward, and the time at each chunk size the curves can
run with, interleaved. The maps are random: the cost does not depend on them.

Run: ``python -m benchmarks metrics [out_dir]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from benchmarks.common import interleaved, median, write

METHODS = 12
POINTS = 40
CHUNKS = ("auto", 1, 2, 4, 8, 16)


def workload():
    from pathattr.zoo import efficientnet_lite0, photo_batch

    torch.manual_seed(0)
    return efficientnet_lite0(), photo_batch(["chelsea"]), torch.rand(METHODS, 1, 3, 224, 224)


def contestants(model, x, maps) -> dict:
    from pathattr.metrics import deletion, insertion

    per_step = -(-224 * 224 // POINTS)

    def curves(bs):
        for a in maps:
            insertion(model, x, a, pixels_per_step=per_step, batch_size=bs)
            deletion(model, x, a, pixels_per_step=per_step, batch_size=bs)

    return {f"chunk {bs}": (lambda bs=bs: curves(bs)) for bs in CHUNKS}


def run(out_dir: Path = Path("results/bench"), reps: int = 3) -> dict:
    """Writes ``metrics.json`` and ``metrics.md`` to ``out_dir``."""
    from pathattr.engine import chunk_size

    torch.set_num_threads(2)
    model, x, maps = workload()
    fns = contestants(model, x, maps)
    times = interleaved(fns, reps)
    med = {k: median(v) for k, v in times.items()}
    forwards = METHODS * 2 * (POINTS + 1)
    auto = chunk_size(model, x, "auto", POINTS + 1)
    lines = [f"# Insertion + deletion, {METHODS} maps, one 224 px photo, EfficientNet-Lite0, "
             f"{POINTS + 1} points per curve (median of {reps}, interleaved)", "",
             f"{forwards} forward passes in all ({POINTS + 1} per curve); 'auto' chose chunks "
             f"of {auto}.", "",
             "| chunk | seconds | spread | ms per forward | vs auto |", "|---|---:|---|---:|---:|"]
    for k in fns:
        lines.append(f"| {k} | {med[k]:.2f} | {min(times[k]):.2f}-{max(times[k]):.2f} | "
                     f"{1000 * med[k] / forwards:.1f} | {med['chunk auto'] / med[k]:.2f}x |")
    data = {"times": times, "median": med, "forwards": forwards, "auto_chunk": auto}
    write(out_dir, "metrics", data, "\n".join(lines) + "\n")
    return data


if __name__ == "__main__":
    run(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("results/bench"))
