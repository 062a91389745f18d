"""Time of the IDG family on EfficientNet-Lite0 and real photos, interleaved, median of reps.

Ratios asked by issue 5: IDG (50, adaptive) / IG (50) <= 1.3; ``explain`` with IG + left-IG +
uniform IDG + conductance at 3 layers <= 1.3 x IG alone (and the time of running them one by
one); our Guided IG against PAIR saliency's. ``idg_coarse_pass`` times IDG's forward-only
coarse pass alone, so that ``(ig + coarse) / ig`` shows the least IDG can cost. Every method at
its defaults unless ``steps`` or ``gig_steps`` are given (the quick mode of a loaded machine).
Writes ``methods.json`` and ``methods.md`` to ``out_dir``.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")
LAYERS = ("_blocks.4", "_blocks.8", "_blocks.12")


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


def run(out_dir: str | Path = "results/bench", photos=PHOTOS, reps: int = 5,
        steps: int | None = None, gig_steps: int | None = None, extras: bool = True) -> dict:
    """Time every method and write the tables. ``steps`` (default: each method's default, 50)
    and ``gig_steps`` (default 200) shrink the run; ``extras`` adds Blur IG, AGI and SmoothGrad
    (one rep each: they cost 2-25 IG runs). Returns the JSON-able results."""
    import pathattr
    from pathattr.engine import guarded
    from pathattr.methods._setup import flat_points, setup
    from pathattr.methods.agi import AdversarialGradientIntegration
    from pathattr.methods.blur_ig import BlurIntegratedGradients
    from pathattr.methods.conductance import LayerConductance
    from pathattr.methods.guided_ig import GuidedIntegratedGradients
    from pathattr.methods.idg import IntegratedDecisionGradients, coarse_points
    from pathattr.methods.left_ig import LeftIntegratedGradients
    from pathattr.methods.smoothgrad import SmoothGrad
    from pathattr.shared_pass import explain
    from pathattr.zoo import efficientnet_lite0, photo_batch

    model = efficientnet_lite0()
    x = photo_batch(list(photos))
    with torch.no_grad():
        target = model(x).argmax(1)
    kw = {"target": target}
    st = {} if steps is None else {"steps": steps}
    gst = {} if gig_steps is None else {"steps": gig_steps}
    rule = "gausslegendre"

    def separately():
        IntegratedGradients(model).attribute(x, **kw, **st)
        LeftIntegratedGradients(model).attribute(x, **kw, **st)
        IntegratedDecisionGradients(model).attribute(x, **kw, **st, sampling="uniform",
                                                     rule=rule)
        LayerConductance(model, layers=list(LAYERS)).attribute(x, **kw, **st)

    def coarse_pass():
        """IDG's forward-only coarse pass alone, as IntegratedDecisionGradients runs it."""
        s = setup(model, x, None, target)
        pts = torch.as_tensor(coarse_points("riemann_trapezoid", steps or 50)[1:-1],
                              dtype=x.dtype)
        with guarded(model):
            s.engine(model, "auto").values(*flat_points(len(x), pts))

    IntegratedGradients = pathattr.IntegratedGradients
    core = {
        "ig": lambda: IntegratedGradients(model).attribute(x, **kw, **st),
        "idg": lambda: IntegratedDecisionGradients(model).attribute(
            x, **kw, **st, **({} if steps is None else {"coarse_steps": steps})),
        "idg_coarse_pass": coarse_pass,
        "explain": lambda: explain(model, x, ["ig", "left_ig", "idg_uniform",
                                              *[("conductance", n) for n in LAYERS]],
                                   **kw, **st, rule=rule),
        "separately": separately,
        "guided_ig": lambda: GuidedIntegratedGradients(model).attribute(x, **kw, **gst),
        "pair_guided_ig": lambda: _pair_guided_ig(model, x, target, gig_steps or 200),
    }
    times: dict[str, list[float]] = {k: [] for k in core}
    for rep in range(reps):
        for name, fn in core.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
            print(f"rep {rep} {name}: {times[name][-1]:.1f} s", file=sys.stderr, flush=True)
    if extras:
        more = {
            "left_ig": lambda: LeftIntegratedGradients(model).attribute(x, **kw, **st),
            "blur_ig": lambda: BlurIntegratedGradients(model).attribute(x, **kw),
            "agi": lambda: AdversarialGradientIntegration(model).attribute(x, **kw),
            "smoothgrad_ig": lambda: SmoothGrad(IntegratedGradients(model)).attribute(
                x, **kw, **st),
        }
        for name, fn in more.items():
            t0 = time.perf_counter()
            fn()
            times[name] = [time.perf_counter() - t0]
            print(f"{name}: {times[name][-1]:.1f} s", file=sys.stderr, flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    ratios = {"idg / ig": med["idg"] / med["ig"],
              "(ig + idg coarse pass) / ig": (med["ig"] + med["idg_coarse_pass"]) / med["ig"],
              "explain / ig": med["explain"] / med["ig"],
              "separately / ig": med["separately"] / med["ig"],
              "guided_ig / pair_guided_ig": med["guided_ig"] / med["pair_guided_ig"]}
    result = {"model": "efficientnet-lite0", "photos": list(photos), "reps": reps,
              "steps": steps or "defaults", "guided_ig_steps": gig_steps or 200,
              "conductance_layers": list(LAYERS), "threads": torch.get_num_threads(),
              "load_average": os.getloadavg(), "times_s": times, "median_s": med,
              "ratios": ratios}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "methods.json").write_text(json.dumps(result, indent=2))
    lines = [f"EfficientNet-Lite0, {len(photos)} photos, steps {result['steps']}, Guided IG "
             f"steps {result['guided_ig_steps']}, {reps} interleaved reps (extras: 1), "
             f"{result['threads']} threads, load average {result['load_average'][0]:.1f}", "",
             "| method | median s | runs |", "| --- | ---: | --- |"]
    lines += [f"| {k} | {med[k]:.1f} | {', '.join(f'{t:.1f}' for t in v)} |"
              for k, v in times.items()]
    lines += ["", "| ratio | value |", "| --- | ---: |"]
    lines += [f"| {k} | {v:.2f} |" for k, v in ratios.items()]
    (out / "methods.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return result


if __name__ == "__main__":
    env = os.environ.get
    run(env("BENCH_OUT", "results/bench"),
        photos=PHOTOS[: int(env("BENCH_PHOTOS", len(PHOTOS)))],
        reps=int(env("BENCH_REPS", 5)),
        steps=int(env("BENCH_STEPS")) if env("BENCH_STEPS") else None,
        gig_steps=int(env("BENCH_GIG_STEPS")) if env("BENCH_GIG_STEPS") else None,
        extras=env("BENCH_EXTRAS", "1") == "1")
