"""IDG's cost against IG's on EfficientNet-Lite0, and what its cheaper coarse pass changes.

Timing (interleaved, median of reps): IG (50 steps), IDG (50 adaptive samples) with the default
coarse pass (``F`` measured at 25 points, PCHIP-interpolated onto the paper's 50-point grid)
and with the paper's pass (all 50 measured, ``coarse_evaluations=None``). Placement: for each
variant -- ``n`` measured points used directly ("linear": the paper's rule on ``n`` points) or
interpolated onto the 50-point grid ("pchip") -- the mean ``|alpha_k - alpha_k^paper|`` of the
sorted samples against the paper's pass (worst photo), and the relative L2 distance of its
attributions to the paper's pass's and to a converged IDG (400 samples, paper's pass); the
paper's own distance to the converged one is IDG's quadrature error at 50 samples.
Run: ``python -m benchmarks idg-coarse [out_dir]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

import pathattr
from benchmarks.common import interleaved, median, write

PHOTOS = ("chelsea", "coffee", "rocket", "camera")
STEPS = 50
REPS = 5
VARIANTS = ((8, "linear"), (8, "pchip"), (13, "pchip"), (17, "pchip"), (25, "linear"),
            (25, "pchip"), (33, "pchip"))


def workload():
    from pathattr.zoo import efficientnet_lite0, photo_batch
    model, x = efficientnet_lite0(), photo_batch(PHOTOS)
    with torch.no_grad():
        target = model(x).argmax(1)
    return model, x, target


def placement(model, x, target) -> list[dict]:
    """Each variant's placement error and attribution distances (module docstring)."""
    from pathattr.methods.idg import IntegratedDecisionGradients, adaptive_nodes, coarse_values

    idg = IntegratedDecisionGradients(model)
    grid = torch.linspace(0, 1, STEPS, dtype=torch.float64)

    def outputs(points):
        with torch.inference_mode():
            return torch.stack([model(float(a) * x)[torch.arange(len(x)), target].double()
                                for a in points], 1)

    paper = idg.attribute(x, target=target, steps=STEPS, coarse_evaluations=None)
    converged = idg.attribute(x, target=target, steps=400, coarse_evaluations=None)
    ref_alphas = torch.stack(paper.alphas).double()

    def distance(a, b):
        return float(((a - b).flatten(1).norm(dim=1) / b.flatten(1).norm(dim=1)).max())

    rows = [{"variant": "paper (50 measured)", "forwards per image": STEPS - 2,
             "mean |d alpha|": 0.0, "vs paper": 0.0,
             "vs converged": distance(paper.attributions, converged.attributions)}]
    for n, kind in VARIANTS:
        pts = torch.linspace(0, 1, n, dtype=torch.float64)
        values = outputs(pts)
        if kind == "linear":
            alphas, weights = adaptive_nodes(pts, values, STEPS)
        else:
            alphas, weights = adaptive_nodes(grid, coarse_values(grid, pts, values), STEPS)
        attr = sampled_idg(model, x, target, alphas, weights)
        rows.append({"variant": f"{kind} ({n} measured)", "forwards per image": n - 2,
                     "mean |d alpha|": float((alphas - ref_alphas).abs().mean(1).max()),
                     "vs paper": distance(attr, paper.attributions),
                     "vs converged": distance(attr, converged.attributions)})
    return rows


def sampled_idg(model, x, target, alphas, weights):
    """IDG at the given per-image nodes and weights, by plain autograd (float64 sums)."""
    out = torch.zeros_like(x, dtype=torch.float64)
    for i in range(len(x)):
        for a, w in zip(alphas[i].tolist(), weights[i].tolist(), strict=True):
            p = (a * x[i:i + 1]).requires_grad_(True)
            (g,) = torch.autograd.grad(model(p)[0, target[i]], p)
            g = g.double()
            out[i] += w * g[0] * float((g * x[i:i + 1]).sum())
    return out * x


def run(out_dir: str | Path = "results/bench") -> dict:
    torch.set_num_threads(2)
    model, x, target = workload()
    ig, idg = pathattr.IntegratedGradients(model), pathattr.IntegratedDecisionGradients(model)
    fns = {"ig": lambda: ig.attribute(x, target=target, steps=STEPS),
           "idg": lambda: idg.attribute(x, target=target, steps=STEPS),
           "idg (paper's coarse pass)": lambda: idg.attribute(x, target=target, steps=STEPS,
                                                              coarse_evaluations=None)}
    times = interleaved(fns, REPS)
    med = {k: median(v) for k, v in times.items()}
    ratios = {"idg / ig": med["idg"] / med["ig"],
              "idg (paper's coarse pass) / ig": med["idg (paper's coarse pass)"] / med["ig"]}
    rows = placement(model, x, target)
    lines = [f"EfficientNet-Lite0, {len(PHOTOS)} photos, {STEPS} steps/samples, {REPS} "
             f"interleaved reps, {torch.get_num_threads()} threads", "",
             "| contestant | median s | runs |", "| --- | ---: | --- |"]
    lines += [f"| {k} | {med[k]:.2f} | {', '.join(f'{t:.2f}' for t in v)} |"
              for k, v in times.items()]
    lines += ["", "| ratio | value |", "| --- | ---: |"]
    lines += [f"| {k} | {v:.3f} |" for k, v in ratios.items()]
    lines += ["", "| coarse pass | forwards / image | mean abs alpha shift (worst photo) | "
              "rel. L2 to paper's IDG | rel. L2 to converged IDG |", "| --- | ---: | ---: | "
              "---: | ---: |"]
    lines += [f"| {r['variant']} | {r['forwards per image']} | {r['mean |d alpha|']:.4f} | "
              f"{r['vs paper']:.4f} | {r['vs converged']:.4f} |" for r in rows]
    result = {"times_s": times, "median_s": med, "ratios": ratios, "placement": rows,
              "steps": STEPS, "photos": list(PHOTOS)}
    write(Path(out_dir), "idg_coarse", result, "\n".join(lines) + "\n")
    return result


if __name__ == "__main__":
    run(sys.argv[1] if len(sys.argv) > 1 else "results/bench")
