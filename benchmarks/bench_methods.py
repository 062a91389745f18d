"""Time of the IDG family on EfficientNet-Lite0 and real photos, interleaved, median of reps.

Ratios asked by issue 5: IDG (50, adaptive) / IG (50) <= 1.3; ``explain`` with IG + left-IG +
uniform IDG + conductance at 3 layers <= 1.3 x IG alone (and the time of running them one by
one); our Guided IG against PAIR saliency's. ``idg_coarse_pass`` times IDG's forward-only
coarse pass alone, so that ``(ig + coarse) / ig`` shows the least IDG can cost. Every method at
its defaults unless ``steps`` or ``gig_steps`` are given (the quick mode of a loaded machine).
Each measurement runs in a fresh process (model and photos loaded before the clock starts), in
round-robin order over the methods, as the other benchmarks do: in one long-lived process the
allocator's state after one method changed the next one's time by up to 20 %.
Writes ``methods.json`` and ``methods.md`` to ``out_dir``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import publish

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")
LAYERS = ("_blocks.4", "_blocks.8", "_blocks.12")
CORE = ("ig", "idg", "idg_coarse_pass", "explain", "separately", "guided_ig", "pair_guided_ig")
EXTRAS = ("left_ig", "blur_ig", "agi", "smoothgrad_ig")


def _pair_guided_ig(model, x: torch.Tensor, target: torch.Tensor, steps: int) -> None:
    from saliency.core import GuidedIG
    from saliency.core import guided_ig as pair_module
    from saliency.core.base import INPUT_OUTPUT_GRADIENTS

    class Numpy2:  # PAIR 0.2.1 calls np.quantile(interpolation=...), removed in numpy 2
        def __getattr__(self, name):
            return getattr(np, name)

        @staticmethod
        def quantile(a, q, interpolation):
            return np.quantile(a, q, method=interpolation)

    pair_module.np = Numpy2()
    for b in range(len(x)):
        def call(xb, call_model_args=None, expected_keys=None, b=b):
            xt = torch.as_tensor(np.asarray(xb), dtype=torch.float32).requires_grad_(True)
            (g,) = torch.autograd.grad(model(xt)[:, int(target[b])].sum(), xt)
            return {INPUT_OUTPUT_GRADIENTS: g.numpy()}
        GuidedIG().GetMask(x[b].numpy(), call, x_steps=steps)


def _call(name: str, n_photos: int, steps: int | None, gig_steps: int | None) -> float:
    """Run one method in this process; return its wall time in seconds."""
    import pathattr
    from pathattr.call import setup
    from pathattr.engine import guarded
    from pathattr.integrate import flat_points
    from pathattr.methods.idg import coarse_points
    from pathattr.shared_pass import explain
    from pathattr.zoo import efficientnet_lite0, photo_batch

    model = efficientnet_lite0()
    x = photo_batch(list(PHOTOS[:n_photos]))
    with torch.no_grad():
        target = model(x).argmax(1)
    kw = {"target": target}
    st = {} if steps is None else {"steps": steps}
    rule = "gausslegendre"

    def separately():
        pathattr.IntegratedGradients(model).attribute(x, **kw, **st)
        pathattr.LeftIntegratedGradients(model).attribute(x, **kw, **st)
        pathattr.IntegratedDecisionGradients(model).attribute(x, **kw, **st, sampling="uniform",
                                                              rule=rule)
        pathattr.LayerConductance(model, layers=list(LAYERS)).attribute(x, **kw, **st)

    def coarse_pass():
        """IDG's forward-only coarse pass alone, as IntegratedDecisionGradients runs it."""
        s = setup(model, x, None, target)
        pts = torch.as_tensor(coarse_points("riemann_trapezoid", steps or 50)[1:-1],
                              dtype=x.dtype)
        with guarded(model):
            s.engine(model, "auto").values(*flat_points(len(x), pts))

    methods = {
        "ig": lambda: pathattr.IntegratedGradients(model).attribute(x, **kw, **st),
        "idg": lambda: pathattr.IntegratedDecisionGradients(model).attribute(
            x, **kw, **st, **({} if steps is None else {"coarse_steps": steps})),
        "idg_coarse_pass": coarse_pass,
        "explain": lambda: explain(model, x, ["ig", "left-ig", "idg-uniform",
                                              *[("conductance", n) for n in LAYERS]],
                                   **kw, **st, rule=rule),
        "separately": separately,
        "guided_ig": lambda: pathattr.GuidedIntegratedGradients(model).attribute(
            x, **kw, **({} if gig_steps is None else {"steps": gig_steps})),
        "pair_guided_ig": lambda: _pair_guided_ig(model, x, target, gig_steps or 200),
        "left_ig": lambda: pathattr.LeftIntegratedGradients(model).attribute(x, **kw, **st),
        "blur_ig": lambda: pathattr.BlurIntegratedGradients(model).attribute(x, **kw),
        "agi": lambda: pathattr.AdversarialGradientIntegration(model).attribute(x, **kw),
        "smoothgrad_ig": lambda: pathattr.SmoothGrad(pathattr.IntegratedGradients(model))
        .attribute(x, **kw, **st),
    }
    t0 = time.perf_counter()
    methods[name]()
    return time.perf_counter() - t0


def _measure(name: str, n_photos: int, steps: int | None, gig_steps: int | None) -> float:
    cmd = [sys.executable, __file__, "--call", name, str(n_photos), str(steps or 0),
           str(gig_steps or 0)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["seconds"]


def run(out_dir: str | Path = "results/bench", n_photos: int = len(PHOTOS), reps: int = 5,
        steps: int | None = None, gig_steps: int | None = None, extras: bool = True) -> dict:
    """Time every method and write the tables. ``steps`` (default: each method's default, 50)
    and ``gig_steps`` (default 200) shrink the run; ``extras`` adds left-IG, Blur IG, AGI and
    SmoothGrad (one rep each: they cost 1-25 IG runs). Returns the JSON-able results."""
    n = n_photos
    times: dict[str, list[float]] = {k: [] for k in CORE}
    for rep in range(reps):
        for name in CORE:
            times[name].append(_measure(name, n, steps, gig_steps))
            print(f"rep {rep} {name}: {times[name][-1]:.1f} s", file=sys.stderr, flush=True)
    for name in EXTRAS if extras else ():
        times[name] = [_measure(name, n, steps, gig_steps)]
        print(f"{name}: {times[name][-1]:.1f} s", file=sys.stderr, flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    ratios = {"idg / ig": med["idg"] / med["ig"],
              "(ig + idg coarse pass) / ig": (med["ig"] + med["idg_coarse_pass"]) / med["ig"],
              "explain / ig": med["explain"] / med["ig"],
              "separately / ig": med["separately"] / med["ig"],
              "guided_ig / pair_guided_ig": med["guided_ig"] / med["pair_guided_ig"]}
    result = {"model": "efficientnet-lite0", "photos": list(PHOTOS[:n]), "reps": reps,
              "steps": steps or "defaults", "guided_ig_steps": gig_steps or 200,
              "conductance_layers": list(LAYERS), "threads": torch.get_num_threads(),
              "load_average": os.getloadavg(), "times_s": times, "median_s": med,
              "ratios": ratios}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "methods.json").write_text(json.dumps(result, indent=2))
    lines = [f"EfficientNet-Lite0, {n} photos, steps {result['steps']}, Guided IG "
             f"steps {result['guided_ig_steps']}, {reps} interleaved reps (extras: 1), "
             f"{result['threads']} threads, load average {result['load_average'][0]:.1f}", "",
             "| method | median s | runs |", "| --- | ---: | --- |"]
    lines += [f"| {k} | {med[k]:.1f} | {', '.join(f'{t:.1f}' for t in v)} |"
              for k, v in times.items()]
    lines += ["", "| ratio | value |", "| --- | ---: |"]
    lines += [f"| {k} | {v:.2f} |" for k, v in ratios.items()]
    (out / "methods.md").write_text("\n".join(lines) + "\n")
    publish("methods", "\n".join(lines))
    print("\n".join(lines))
    return result


if __name__ == "__main__":
    if sys.argv[1:2] == ["--call"]:
        name, n_photos, steps, gig_steps = sys.argv[2], *map(int, sys.argv[3:6])
        print(json.dumps({"seconds": _call(name, n_photos, steps or None, gig_steps or None)}))
        sys.exit()
    env = os.environ.get
    run(env("BENCH_OUT", "results/bench"),
        n_photos=int(env("BENCH_PHOTOS", len(PHOTOS))),
        reps=int(env("BENCH_REPS", 5)),
        steps=int(env("BENCH_STEPS")) if env("BENCH_STEPS") else None,
        gig_steps=int(env("BENCH_GIG_STEPS")) if env("BENCH_GIG_STEPS") else None,
        extras=env("BENCH_EXTRAS", "1") == "1")
