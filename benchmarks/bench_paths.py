"""IDGI and Expected Gradients on EfficientNet-Lite0: what they cost next to what they reuse.

IDGI takes the same gradients as IG on the left-Riemann nodes and adds only the outputs it
already has, so IDGI / IG (both 50 steps, ``riemann_left``) should stay near 1. Expected
Gradients at ``samples`` draws is compared with Captum's GradientShap at the same number of
samples and no noise (``stdevs=0``: the same estimator), with a data set of 8 reference images
(4 photos and their mirror images); interleaved in one process, peak memory each in a fresh
one. Run: ``python -m benchmarks paths [out_dir]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

import pathattr
from benchmarks.common import interleaved, median, peak_rss_mb, write

PHOTOS = ("chelsea", "coffee")
DATA = ("chelsea", "coffee", "astronaut", "rocket")
STEPS = 50
SAMPLES = 32
REPS = 3


def workload():
    from pathattr.zoo import efficientnet_lite0, photo_batch
    model, x = efficientnet_lite0(), photo_batch(PHOTOS)
    data = photo_batch(DATA)
    data = torch.cat([data, data.flip(-1)])
    with torch.no_grad():
        target = model(x).argmax(1)
    return model, x, target, data


def contestants(model, x, target, data) -> dict:
    from captum.attr import GradientShap

    ig, idgi = pathattr.IntegratedGradients(model), pathattr.IDGI(model)
    eg, gs = pathattr.ExpectedGradients(model), GradientShap(model)
    return {
        "ig (riemann_left)": lambda: ig.attribute(x, target=target, steps=STEPS,
                                                  rule="riemann_left"),
        "idgi": lambda: idgi.attribute(x, target=target, steps=STEPS),
        "expected gradients": lambda: eg.attribute(x, data, target=target, samples=SAMPLES),
        "captum gradientshap": lambda: gs.attribute(x, data, target=target,
                                                    n_samples=SAMPLES, stdevs=0.0),
    }


def run(out_dir: str | Path = "results/bench") -> dict:
    torch.set_num_threads(2)
    model, x, target, data = workload()
    fns = contestants(model, x, target, data)
    times = interleaved(fns, REPS)
    med = {k: median(v) for k, v in times.items()}
    mem = {k: peak_rss_mb("benchmarks.bench_paths", k) for k in fns}
    idgi_r = pathattr.IDGI(model).attribute(x, target=target, steps=STEPS)
    ig_r = pathattr.IntegratedGradients(model).attribute(x, target=target, steps=STEPS,
                                                         rule="riemann_left")
    eg_r = pathattr.ExpectedGradients(model).attribute(x, data, target=target,
                                                       samples=SAMPLES)
    gaps = {"idgi relative delta": idgi_r.relative_delta().tolist(),
            "ig (riemann_left) relative delta": ig_r.relative_delta().tolist(),
            "expected gradients relative delta": eg_r.relative_delta().tolist(),
            "expected gradients sum standard error / |output delta|":
                (eg_r.info["sum_standard_error"] / eg_r.info["output_delta"].abs()).tolist()}
    ratios = {"idgi / ig": med["idgi"] / med["ig (riemann_left)"],
              "expected gradients / captum gradientshap":
                  med["expected gradients"] / med["captum gradientshap"]}
    lines = [f"EfficientNet-Lite0, {len(PHOTOS)} photos, IG/IDGI {STEPS} steps, Expected "
             f"Gradients / GradientShap {SAMPLES} samples over {len(data)} reference images, "
             f"{REPS} interleaved reps, {torch.get_num_threads()} threads", "",
             "| contestant | median s | runs | peak extra MiB |", "| --- | ---: | --- | ---: |"]
    lines += [f"| {k} | {med[k]:.2f} | {', '.join(f'{t:.2f}' for t in v)} | {mem[k]:.0f} |"
              for k, v in times.items()]
    lines += ["", "| ratio | value |", "| --- | ---: |"]
    lines += [f"| {k} | {v:.3f} |" for k, v in ratios.items()]
    lines += ["", "| completeness | per photo |", "| --- | --- |"]
    lines += [f"| {k} | {', '.join(f'{v:.2e}' for v in vs)} |" for k, vs in gaps.items()]
    result = {"times_s": times, "median_s": med, "peak_extra_mib": mem, "ratios": ratios,
              "gaps": gaps, "steps": STEPS, "samples": SAMPLES, "reference_images": len(data)}
    write(Path(out_dir), "paths", result, "\n".join(lines) + "\n")
    return result


if __name__ == "__main__":
    run(sys.argv[1] if len(sys.argv) > 1 else "results/bench")
