"""DeepLIFT (Rescale, RevealCancel) against Captum's DeepLift and the bare floor.

The floor is one forward and one backward of the batch ``[x; x']`` (parameters frozen, gradient
at the input only), as the issue defines it. Methods are timed interleaved and each reports the
median of ``REPEATS`` runs, its ratio to the floor, its summation-to-delta error
``max |sum C - (F(x) - F(x'))| / |F(x) - F(x')|``, and its peak extra resident memory during one
run (RSS sampled every 2 ms, minus the RSS at its start; approximate: the allocator may reuse
pages freed by an earlier run).

Run: ``python benchmarks/bench_deeplift.py [out_dir]`` (default ``results/bench``).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import threading
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from benchmarks.common import publish
from pathattr.engine import guarded
from pathattr.methods.deeplift import DeepLift

REPEATS = 11
METHODS = ("bare", "rescale", "revealcancel", "captum")
PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")


def plain_cnn() -> nn.Module:
    """A ReLU CNN without module reuse (Captum's supported case), seeded."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(128, 10)).eval()


def workload(name: str) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """``(model, x, target)`` for "efficientnet" (4 photos) or "cnn" (16 random 64x64)."""
    if name == "efficientnet":
        from pathattr.zoo import efficientnet_lite0, photo_batch
        model, x = efficientnet_lite0(), photo_batch(PHOTOS)
    else:
        model = plain_cnn()
        x = torch.randn(16, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        target = model(x).argmax(1)
    return model, x, target


def run_method(method: str, model: nn.Module, x: torch.Tensor, target: torch.Tensor):
    """Attributions (None for the floor) and the output difference F(x) - F(x')."""
    base = torch.zeros_like(x)
    if method == "bare":
        with guarded(model):  # parameters frozen, as every pathattr method runs
            inputs = torch.cat([x, base]).requires_grad_(True)
            out = model(inputs).gather(1, target.repeat(2)[:, None])[:, 0]
            torch.autograd.grad(out[:len(x)].sum(), inputs)  # input gradient only
        return None, None
    if method == "captum":
        from captum.attr import DeepLift as CaptumDeepLift
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            attr = CaptumDeepLift(model).attribute(x, baselines=base, target=target).detach()
    else:
        attr = DeepLift(model, method).attribute(x, base, target=target).attributions
    with torch.no_grad():
        f = model(torch.cat([x, base])).gather(1, target.repeat(2)[:, None])[:, 0]
    return attr, f[:len(x)] - f[len(x):]


def relative_gap(attr: torch.Tensor, out_delta: torch.Tensor) -> float:
    return ((attr.flatten(1).sum(1) - out_delta).abs() / out_delta.abs()).max().item()


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def with_peak_rss(fn):
    """``(fn(), peak extra resident MB during the call)``, by sampling RSS every 2 ms (torch
    releases the GIL in its kernels; large tensors are mmapped and returned on free)."""
    start = peak = _rss()
    done = threading.Event()

    def watch():
        nonlocal peak
        while not done.wait(0.002):
            peak = max(peak, _rss())
    thread = threading.Thread(target=watch)
    thread.start()
    try:
        result = fn()
    finally:
        done.set()
        thread.join()
    return result, (max(peak, _rss()) - start) / 2**20


def bench_workload(name: str) -> dict:
    model, x, target = workload(name)
    times: dict[str, list[float]] = {m: [] for m in METHODS}
    errors: dict[str, str] = {}
    gaps: dict[str, float] = {}
    memory: dict[str, float] = {}
    for method in METHODS:  # warm-up, correctness, memory and failures
        try:
            run_method(method, model, x, target)
            (attr, out_delta), memory[method] = with_peak_rss(
                lambda m=method: run_method(m, model, x, target))
            if attr is not None:
                gaps[method] = relative_gap(attr, out_delta)
        except Exception as e:  # a competitor failing is a result, not a crash
            errors[method] = f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
    for _ in range(REPEATS):
        for method in METHODS:
            if method in errors:
                continue
            t = time.perf_counter()
            run_method(method, model, x, target)
            times[method].append(time.perf_counter() - t)
    floor = statistics.median(times["bare"])
    rows = []
    for method in METHODS:
        med = statistics.median(times[method]) if times[method] else None
        rows.append({
            "method": method, "median_s": med, "ratio_to_floor": med / floor if med else None,
            "times_s": times[method], "relative_sum_to_delta": gaps.get(method),
            "peak_extra_rss_mb": memory.get(method), "error": errors.get(method)})
    return {"workload": name, "batch": len(x), "input_shape": list(x.shape[1:]),
            "repeats": REPEATS, "rows": rows}


def _fmt(v, spec: str) -> str:
    return "–" if v is None else format(v, spec)


def markdown(results: list[dict]) -> str:
    lines = ["| workload | method | median s | × floor | sum-to-delta rel. err | peak extra RSS MB "
             "| note |", "|---|---|---|---|---|---|---|"]
    for res in results:
        for r in res["rows"]:
            lines.append(
                f"| {res['workload']} (B={res['batch']}) | {r['method']} | "
                f"{_fmt(r['median_s'], '.3f')} | {_fmt(r['ratio_to_floor'], '.2f')} | "
                f"{_fmt(r['relative_sum_to_delta'], '.1e')} | "
                f"{_fmt(r['peak_extra_rss_mb'], '.0f')} | {r['error'] or ''} |")
    return "\n".join(lines) + "\n"


def run(out_dir: str | Path = "results/bench") -> list[dict]:
    """Benchmark both workloads; write ``deeplift.json`` and ``deeplift.md`` to ``out_dir``."""
    results = [bench_workload(name) for name in ("cnn", "efficientnet")]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(),
            "memory": "peak extra RSS in MB during one run, sampled every 2 ms"}
    (out / "deeplift.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    (out / "deeplift.md").write_text(markdown(results))
    publish("deeplift", markdown(results))
    return results


if __name__ == "__main__":
    res = run(sys.argv[1] if len(sys.argv) > 1 else "results/bench")
    print(markdown(res))
