"""Integrated Gradients on EfficientNet-Lite0: pathattr vs Captum vs the bare floor.

The floor is a hand-written loop over the same 50 Gauss-Legendre points per photo, in the same
chunks: build the points, forward, pick the target logit, backward to the input, accumulate
the weighted gradient. pathattr is compared with it at equal chunking, and with Captum at each
library's defaults and at each one's best chunk size. Also: how many gradient evaluations
``steps="auto"`` needs to reach 1 % completeness error, against fixed rules.

Run: ``python -m benchmarks ig [out_dir]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

import pathattr
from benchmarks.common import interleaved, median, peak_rss_mb, write

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")
STEPS = 50
RULES = ("gausslegendre", "riemann_trapezoid")
CHUNKS = (16, 32)


def workload():
    from pathattr.zoo import efficientnet_lite0, photo_batch
    model, x = efficientnet_lite0(), photo_batch(PHOTOS)
    with torch.no_grad():
        target = model(x).argmax(1)
    return model, x, target


def floor(model, x, target, chunk: int) -> torch.Tensor:
    """The best bare loop: frozen parameters, chunked points, one backward per chunk."""
    a, w = np.polynomial.legendre.leggauss(STEPS)
    alphas = torch.tensor((a + 1) / 2, dtype=x.dtype)
    weights = torch.tensor(w / 2, dtype=x.dtype)
    rows = torch.arange(len(x)).repeat_interleave(STEPS)
    al, wt = alphas.repeat(len(x)), weights.repeat(len(x))
    for p in model.parameters():
        p.requires_grad_(False)
    acc = torch.zeros_like(x)
    for s in range(0, len(rows), chunk):
        r = rows[s:s + chunk]
        pts = (al[s:s + chunk].view(-1, 1, 1, 1) * x[r]).contiguous(
            memory_format=torch.channels_last).requires_grad_(True)
        out = model(pts).gather(1, target[r][:, None]).sum()
        (g,) = torch.autograd.grad(out, pts)
        acc.index_add_(0, r, g * wt[s:s + chunk].view(-1, 1, 1, 1))
    for p in model.parameters():
        p.requires_grad_(True)
    return acc * x


def contestants(model, x, target) -> dict:
    from captum.attr import IntegratedGradients as CaptumIG
    ig, cig = pathattr.IntegratedGradients(model), CaptumIG(model)
    fns = {"pathattr default": lambda: ig.attribute(x, target=target, steps=STEPS),
           "captum default": lambda: cig.attribute(x, target=target, n_steps=STEPS,
                                                   method="gausslegendre")}
    for c in CHUNKS:
        fns[f"floor chunk {c}"] = lambda c=c: floor(model, x, target, c)
        fns[f"pathattr chunk {c}"] = lambda c=c: ig.attribute(x, target=target, steps=STEPS,
                                                              batch_size=c)
        fns[f"captum chunk {c}"] = lambda c=c: cig.attribute(
            x, target=target, n_steps=STEPS, method="gausslegendre", internal_batch_size=c)
    return fns


def evaluations_to_tolerance(model, x, target, tol=0.01) -> dict:
    """Gradient evaluations per photo: ``steps="auto"`` vs the smallest fixed step counts."""
    ig = pathattr.IntegratedGradients(model)
    r = ig.attribute(x, target=target, steps="auto", tol=tol)
    out = {"auto": {"evaluations": r.info["gradient_evaluations"].tolist(),
                    "relative_delta": (r.delta.abs() / r.info["output_delta"].abs()).tolist(),
                    "converged": r.info["converged"].tolist()}}
    for rule in RULES:
        errs = {}
        for steps in (32, 64, 128, 256):
            r = ig.attribute(x, target=target, steps=steps, rule=rule)
            errs[steps] = (r.delta.abs() / r.info["output_delta"].abs()).tolist()
        ok = [s for s, e in errs.items() if max(e) <= tol]
        # a fixed rule "needs" the smallest count from which on every photo meets the tolerance
        need = next((s for s in errs if all(max(errs[t]) <= tol for t in errs if t >= s)), None)
        out[rule] = {"relative_delta": errs, "first_meeting": min(ok) if ok else None,
                     "needs": need}
    return out


def run(out_dir: Path = Path("results/bench"), reps: int = 5, sweep: bool = True) -> dict:
    """Time, memory and (with ``sweep``) evaluation counts; writes ``ig.json`` and ``ig.md``
    to ``out_dir``."""
    torch.set_num_threads(2)
    model, x, target = workload()
    times = interleaved(contestants(model, x, target), reps)
    med = {k: median(v) for k, v in times.items()}
    mem = {k: peak_rss_mb("benchmarks.bench_ig", k) for k in med}
    evals = evaluations_to_tolerance(model, x, target) if sweep else None
    best_p = min((k for k in med if k.startswith("pathattr chunk")), key=med.get)
    best_c = min((k for k in med if k.startswith("captum")), key=med.get)
    lines = [f"# IG, EfficientNet-Lite0, {len(x)} photos x {STEPS} Gauss-Legendre steps "
             f"(median of {reps}, interleaved)", "",
             "| contestant | seconds | vs floor (same chunk) | vs captum default | "
             "peak extra RSS MiB |", "|---|---:|---:|---:|---:|"]
    for k in sorted(med):
        chunk = k.rsplit(" ", 1)[-1]
        fl = med.get(f"floor chunk {chunk}")
        lines.append(f"| {k} | {med[k]:.2f} | {med[k] / fl:.3f} |" if fl else f"| {k} | "
                     f"{med[k]:.2f} | |")
        lines[-1] += f" {med['captum default'] / med[k]:.2f}x | {mem[k]:.0f} |"
    lines += ["", f"pathattr default is {med['captum default'] / med['pathattr default']:.2f}x "
              f"faster than captum default; best pathattr ({best_p}) vs best captum ({best_c}): "
              f"{med[best_c] / med[best_p]:.2f}x."]
    if evals:
        lines += ["", "## Gradient evaluations to reach 1 % completeness error", "",
                  "| rule | evaluations per photo | relative delta |", "|---|---|---|",
                  f"| auto (adaptive trapezoid) | {evals['auto']['evaluations']} | "
                  f"{[round(e, 4) for e in evals['auto']['relative_delta']]} |"]
    for rule in RULES if evals else ():
        e = evals[rule]
        lines.append(f"| {rule} | needs {e['needs']} (first meets at {e['first_meeting']}) | "
                     + ", ".join(f"{s}: {max(v):.4f}" for s, v in e["relative_delta"].items())
                     + " |")
    data = {"times": times, "median": med, "peak_rss_mb": mem, "evaluations": evals,
            "photos": PHOTOS, "steps": STEPS}
    write(out_dir, "ig", data, "\n".join(lines) + "\n")
    return data


if __name__ == "__main__":
    run(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("results/bench"),
        sweep="--no-sweep" not in sys.argv)
