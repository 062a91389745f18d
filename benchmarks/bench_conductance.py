"""Conductance on EfficientNet-Lite0: pathattr vs Captum vs the bare floor, time and peak memory.

Every measurement runs in a fresh subprocess, in round-robin order over the methods (this
machine is noisy, so repetitions are interleaved and the median is reported). Peak memory is
``ru_maxrss`` of that process minus its value right after loading the model and photos and
running one warm-up forward: the extra resident memory the call needed at its peak.

    python benchmarks/bench_conductance.py [out_dir] [--reps 3] [--steps 50] [--nc-steps 50]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from benchmarks.common import publish

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")
BLOCK = "_blocks.8"
TARGET = 285
CHUNK = 16  # the engine's automatic chunk for 224x224 images; given to Captum and the floor too
WIDTH_LAYERS = ("_blocks.2", "_blocks.5", "_blocks.8", "_blocks.14", "_conv_head")


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _floor(model, x, layer, steps):
    """Hand-written chunked forward + backward to the layer over the same points."""
    import numpy as np

    a = torch.as_tensor((np.polynomial.legendre.leggauss(steps)[0] + 1) / 2, dtype=x.dtype)
    pts = (a[None, :, None, None, None] * x[:, None]).flatten(0, 1)
    module = model.get_submodule(layer)
    grads, seen = [], []

    def cut(_m, _i, out):
        seen.append(out.detach().requires_grad_(True))
        return seen[-1]

    for p in model.parameters():
        p.requires_grad_(False)
    h = module.register_forward_hook(cut)
    try:
        for s in range(0, len(pts), CHUNK):
            seen.clear()
            out = model(pts[s:s + CHUNK].contiguous(memory_format=torch.channels_last))
            grads.append(torch.autograd.grad(out[:, TARGET].sum(), seen[0])[0])
    finally:
        h.remove()
    return torch.cat(grads)


def _call(method: str, steps: int, k: int, layer: str) -> None:
    """Run one measured call in this (fresh) process; print a JSON line with time and memory."""
    from captum.attr import LayerConductance as CaptumLC
    from captum.attr import NeuronConductance as CaptumNC

    from pathattr.methods.conductance import LayerConductance, NeuronConductance
    from pathattr.zoo import efficientnet_lite0, photo_batch

    model, x = efficientnet_lite0(), photo_batch(PHOTOS)
    with torch.no_grad():
        model(x[:1])
    base = _maxrss_mb()
    neurons = [(c % 112, (c * 5) % 14, (c * 3) % 14) for c in range(k)]
    t = time.perf_counter()
    if method == "pathattr_lc":
        LayerConductance(model, layer).attribute(x, target=TARGET, steps=steps)
    elif method in ("captum_lc", "captum_lc_default"):
        CaptumLC(model, model.get_submodule(layer)).attribute(
            x, target=TARGET, n_steps=steps, method="gausslegendre",
            internal_batch_size=CHUNK if method == "captum_lc" else None)
    elif method == "floor":
        _floor(model, x, layer, steps)
    elif method == "pathattr_nc":
        NeuronConductance(model, layer).attribute(x, neurons, target=TARGET, steps=steps)
    elif method in ("captum_nc", "captum_nc_default"):  # k calls of the single-neuron method
        for n in neurons:
            CaptumNC(model, model.get_submodule(layer)).attribute(
                x, n, target=TARGET, n_steps=steps, method="gausslegendre",
                internal_batch_size=CHUNK if method == "captum_nc" else None)
    else:
        raise ValueError(method)
    print(json.dumps({"seconds": time.perf_counter() - t, "peak_mb": _maxrss_mb() - base}))


def _measure(method: str, steps: int, k: int = 0, layer: str = BLOCK) -> dict:
    cmd = [sys.executable, __file__, "--call", method, "--steps", str(steps), "--k", str(k),
           "--layer", layer]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def run(out_dir: str | Path = "results/bench", reps: int = 3, steps: int = 50,
        nc_steps: int = 50, captum_nc_calls: int = 2) -> dict:
    """Measure everything and write ``conductance.json`` and ``conductance.md`` to ``out_dir``.

    Returns the results dict. Captum's K-neuron loop is timed for ``captum_nc_calls`` calls and
    extrapolated linearly to K (its calls are independent and identical in cost).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lc: dict[str, list[dict]] = {"floor": [], "pathattr_lc": [], "captum_lc": [],
                                 "captum_lc_default": []}
    for _ in range(reps):
        for method in lc:
            lc[method].append(_measure(method, steps))
    lc_table = {m: {"seconds": _median(r, "seconds"), "peak_mb": _median(r, "peak_mb")}
                for m, r in lc.items()}
    nc: dict[int, dict] = {}
    per_call = _measure("captum_nc", nc_steps, captum_nc_calls)["seconds"] / captum_nc_calls
    default_call = _measure("captum_nc_default", nc_steps, 1)
    for k in (1, 16, 64):
        ours = _measure("pathattr_nc", nc_steps, k)
        nc[k] = {"pathattr_seconds": ours["seconds"], "pathattr_peak_mb": ours["peak_mb"],
                 "captum_seconds_extrapolated": per_call * k,
                 "speedup": per_call * k / ours["seconds"],
                 "captum_default_seconds_extrapolated": default_call["seconds"] * k,
                 "speedup_vs_default": default_call["seconds"] * k / ours["seconds"]}
    # Each neuron beyond the first costs one vector-Jacobian product per path point; Captum
    # pays a whole forward and two backward passes per neuron, so this ratio bounds the speedup.
    marginal = (nc[64]["pathattr_seconds"] - nc[16]["pathattr_seconds"]) / 48
    widths = {}
    for layer in WIDTH_LAYERS:
        r = _measure("pathattr_lc", steps, layer=layer)
        widths[layer] = {"seconds": r["seconds"], "peak_mb": r["peak_mb"]}
    from pathattr.zoo import efficientnet_lite0

    model = efficientnet_lite0()
    shapes = {}
    hooks = [model.get_submodule(n).register_forward_hook(
        lambda m, i, o, n=n: shapes.__setitem__(n, tuple(o.shape[1:]))) for n in WIDTH_LAYERS]
    with torch.no_grad():
        model(torch.zeros(1, 3, 224, 224))
    for h in hooks:
        h.remove()
    for layer in WIDTH_LAYERS:
        widths[layer]["neurons"] = int(torch.tensor(shapes[layer]).prod())
        widths[layer]["shape"] = shapes[layer]
    results = {"setup": {"model": "efficientnet-lite0", "photos": PHOTOS, "layer": BLOCK,
                         "steps": steps, "nc_steps": nc_steps, "reps": reps, "chunk": CHUNK,
                         "torch_threads": torch.get_num_threads()},
               "layer_conductance": lc_table, "layer_conductance_runs": lc,
               "neuron_conductance": nc, "all_neurons_by_width": widths,
               "captum_nc_seconds_per_call": per_call,
               "captum_nc_default_seconds_per_call": default_call["seconds"],
               "captum_nc_default_peak_mb": default_call["peak_mb"],
               "pathattr_nc_seconds_per_extra_neuron": marginal,
               "nc_speedup_bound_same_chunk": per_call / marginal}
    (out_dir / "conductance.json").write_text(json.dumps(results, indent=2))
    (out_dir / "conductance.md").write_text(_markdown(results))
    publish("conductance", _markdown(results))
    return results


def _markdown(r: dict) -> str:
    s, lc = r["setup"], r["layer_conductance"]
    fl, cap, dft = lc["floor"], lc["captum_lc"], lc["captum_lc_default"]
    lines = [f"### LayerConductance, EfficientNet-Lite0 `{s['layer']}`, {s['steps']} GL steps, "
             f"{len(s['photos'])} photos (median of {s['reps']}, interleaved)", "",
             "| method | time (s) | x floor | x Captum | x Captum defaults | peak extra RSS (MB) "
             "| x Captum | x Captum defaults |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for m, v in lc.items():
        lines.append(f"| {m} | {v['seconds']:.2f} | {v['seconds'] / fl['seconds']:.2f} | "
                     f"{v['seconds'] / cap['seconds']:.2f} | {v['seconds'] / dft['seconds']:.2f} | "
                     f"{v['peak_mb']:.0f} | {v['peak_mb'] / max(cap['peak_mb'], 1e-9):.2f} | "
                     f"{v['peak_mb'] / max(dft['peak_mb'], 1e-9):.2f} |")
    lines += ["", f"Captum at its defaults (`internal_batch_size=None`: all points in one batch) "
              f"is `captum_lc_default`; the others run in chunks of {s['chunk']}.", "",
              f"### NeuronConductance, K neurons of `{s['layer']}`, {s['nc_steps']} GL "
              "steps (Captum: K single-neuron calls, extrapolated from "
              f"{r['captum_nc_seconds_per_call']:.2f} s per call in chunks of {s['chunk']}, "
              f"{r['captum_nc_default_seconds_per_call']:.2f} s per call at its defaults, "
              f"peak extra RSS {r['captum_nc_default_peak_mb']:.0f} MB)", "",
              "| K | pathattr (s) | Captum loop, same chunk (s) | speedup | Captum loop, "
              "defaults (s) | speedup | pathattr peak extra RSS (MB) |",
              "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for k, v in r["neuron_conductance"].items():
        lines.append(f"| {k} | {v['pathattr_seconds']:.2f} | "
                     f"{v['captum_seconds_extrapolated']:.1f} | {v['speedup']:.1f} | "
                     f"{v['captum_default_seconds_extrapolated']:.1f} | "
                     f"{v['speedup_vs_default']:.1f} | {v['pathattr_peak_mb']:.0f} |")
    lines += ["", f"Each neuron beyond the first costs pathattr "
              f"{r['pathattr_nc_seconds_per_extra_neuron']:.2f} s (one vector-Jacobian product "
              f"per path point); a Captum call in the same chunks costs "
              f"{r['captum_nc_seconds_per_call']:.2f} s, so no K gives more than "
              f"{r['nc_speedup_bound_same_chunk']:.1f}x at equal chunks."]
    lines += ["", "### All neurons of one layer, LayerConductance (one run each)", "",
              "| layer | shape | neurons | time (s) | peak extra RSS (MB) |",
              "| --- | --- | ---: | ---: | ---: |"]
    for layer, v in r["all_neurons_by_width"].items():
        lines.append(f"| {layer} | {v['shape']} | {v['neurons']} | {v['seconds']:.2f} | "
                     f"{v['peak_mb']:.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("out_dir", nargs="?", default="results/bench")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--nc-steps", type=int, default=50)
    ap.add_argument("--call")
    ap.add_argument("--k", type=int, default=0)
    ap.add_argument("--layer", default=BLOCK)
    a = ap.parse_args()
    if a.call:
        _call(a.call, a.steps, a.k, a.layer)
    else:
        print(_markdown(run(a.out_dir, a.reps, a.steps, a.nc_steps)))
