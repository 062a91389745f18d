"""Walker, Jha, Chen, Ewetz 2023, *Integrated Decision Gradients*: insertion and deletion AUCs
(RISE protocol) of IDG and the methods it is compared against, plus ROAD (MoRF, LeRF) and the
controls (each method's inverse ranking, a random ranking), on EfficientNet-Lite0 and -Lite1
with every bundled photo both classify sensibly, with the time of each method; mean AUCs with
bootstrap intervals and paired comparisons of IDG against each method
(``pathattr.evaluation``).

Protocol as in the paper: baseline zero in the model's normalised input space; IDG, left-IG
(and IG, Blur IG, SmoothGrad-IG) explain the logit; Guided IG the softmax probability; absolute
channel-summed saliency; insertion from a blur, deletion to zeros, 224 pixels (one row) per
step. Deviations are listed in ``DEVIATIONS`` and in the report's header.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from ..evaluation import Evaluation, Evaluator
from ..files import safe_name
from ..methods.agi import AdversarialGradientIntegration
from ..methods.blur_ig import BlurIntegratedGradients
from ..methods.guided_ig import GuidedIntegratedGradients
from ..methods.idg import IntegratedDecisionGradients
from ..methods.integrated_gradients import IntegratedGradients
from ..methods.left_ig import LeftIntegratedGradients
from ..methods.smoothgrad import SmoothGrad
from ..viz import curves_figure, method_grid
from ..viz.curves import RANDOM
from .common import digits_examples, predict, progress, table, timer, write_results

METHODS = ("IG", "left-IG", "Guided IG", "AGI", "IDG (uniform)", "IDG (adaptive)", "Blur IG",
           "SmoothGrad-IG")

#: Every real photo that ships in an installed package (``pathattr.zoo.PHOTOS``) and both
#: models classify sensibly. ImageNet has no rocket, motorcycle or plain camera class: their
#: nearest classes (missile / space shuttle, moped, tripod) count as sensible.
USED = ("chelsea", "coffee", "rocket", "camera", "motorcycle", "china")

#: Bundled photos left out, and why (top class and probability, Lite0 / Lite1).
EXCLUDED = {
    "astronaut": "'football helmet' (0.16) / 'football helmet' (0.15): wrong -- ImageNet has no "
                 "spacesuit class",
    "grace_hopper": "'academic gown' (0.24) / 'comic book' (0.09): wrong -- she wears a US "
                    "Navy uniform ('military uniform' is an ImageNet class)",
    "flower": "'daisy' (0.36) / 'honeycomb' (0.04): Lite1 is wrong",
}

FULL = {"models": ("efficientnet-lite0", "efficientnet-lite1"), "photos": USED,
        "methods": METHODS, "steps": 50, "coarse_steps": 50, "left_fraction": 0.9,
        "guided_steps": 100, "guided_fraction": 0.25, "guided_max_dist": 0.02,
        "agi_epsilon": 0.05, "agi_steps": 20, "agi_classes": 4, "blur_max_sigma": 50.0,
        "blur_steps": 50, "smoothgrad_samples": 8, "smoothgrad_sigma": 0.15,
        "smoothgrad_ig_steps": 20, "pixels_per_step": 224,
        "metrics": ("insertion", "deletion", "road_morf", "road_lerf"), "heatmaps": 2}
QUICK = {**FULL, "models": ("digits-cnn",), "photos": (), "digits": 6,
         "methods": ("IG", "left-IG", "IDG (adaptive)"), "steps": 8, "coarse_steps": 10,
         "pixels_per_step": 4, "heatmaps": 1}
REFERENCE = "IDG (adaptive)"

DEVIATIONS = [
    "AGI explains the logit (the library's AGI moves toward integer classes and integrates "
    "their logit; the published code offers softmax) and uses the {agi_classes} highest false "
    "classes instead of a random sample",
    "Guided IG with {guided_steps} steps (PAIR default 200), Blur IG with {blur_steps} steps, "
    "SmoothGrad-IG with {smoothgrad_samples} samples x {smoothgrad_ig_steps} IG steps: to fit "
    "the time budget on two CPU cores",
    "photos instead of the ImageNet validation set (which does not install offline): "
    "{n_photos} inputs, so the Wilcoxon test's smallest two-sided p-value is {min_p:.3g}",
]


def softmax_of(c: int) -> Callable[[Tensor], Tensor]:
    """Target: the softmax probability of class ``c`` (rows of one example only)."""
    return lambda out: out.softmax(-1)[:, c]


def attribute(name: str, model: nn.Module, x: Tensor, target: Tensor, s: dict) -> Tensor:
    """The attributions of method ``name`` for images ``x`` (shape of ``x``).
    Cost: see ``run``'s docstring; Guided IG runs per image (its softmax target is per class)."""
    if name == "IG":
        return IntegratedGradients(model).attribute(x, target=target,
                                                    steps=s["steps"]).attributions
    if name == "left-IG":
        return LeftIntegratedGradients(model).attribute(
            x, target=target, steps=s["steps"], saturation=s["left_fraction"]).attributions
    if name.startswith("IDG"):
        sampling = "uniform" if "uniform" in name else "adaptive"
        return IntegratedDecisionGradients(model).attribute(
            x, target=target, steps=s["steps"], sampling=sampling,
            coarse_steps=s["coarse_steps"]).attributions
    if name == "Guided IG":
        gig = GuidedIntegratedGradients(model)
        return torch.cat([gig.attribute(x[i:i + 1], target=softmax_of(int(t)),
                                        steps=s["guided_steps"], fraction=s["guided_fraction"],
                                        max_dist=s["guided_max_dist"]).attributions
                          for i, t in enumerate(target)])
    if name == "AGI":
        return AdversarialGradientIntegration(model).attribute(
            x, target=target, epsilon=s["agi_epsilon"], steps=s["agi_steps"],
            classes=s["agi_classes"]).attributions
    if name == "Blur IG":
        return BlurIntegratedGradients(model).attribute(
            x, target=target, max_sigma=s["blur_max_sigma"], steps=s["blur_steps"]).attributions
    if name == "SmoothGrad-IG":
        sg = SmoothGrad(IntegratedGradients(model), samples=s["smoothgrad_samples"],
                        sigma=s["smoothgrad_sigma"])
        return sg.attribute(x, target=target, steps=s["smoothgrad_ig_steps"]).attributions
    raise ValueError(f"unknown method {name!r}; expected one of {', '.join(METHODS)}")


def evaluate(model: nn.Module, x: Tensor, labels: list[str], s: dict
             ) -> tuple[Evaluation, dict[str, Tensor], dict[str, float]]:
    """Every method's attributions (timed), then every metric with its controls per image.
    Returns the ``Evaluation``, ``{method: attributions}`` and ``{method: seconds per image}``.
    """
    target, _ = predict(model, x)
    attrs, seconds = {}, {}
    for name in s["methods"]:
        progress(f"idg: {name} on {len(x)} images")
        with timer() as t:
            attrs[name] = attribute(name, model, x, target, s)
        seconds[name] = t["s"] / len(x)
    ev = Evaluator(model, s["methods"], s["metrics"], s["pixels_per_step"])
    for i, label in enumerate(labels):
        progress(f"idg: {', '.join(s['metrics'])} with controls on {label}")
        ev.add(label, x[i:i + 1], {m: a[i] for m, a in attrs.items()}, int(target[i]))
    return ev.result, attrs, seconds


def verdict(ev: Evaluation) -> dict[str, object]:
    """Per metric: IDG (adaptive) against each other method and the random ranking (paired
    differences, bootstrap interval, Wilcoxon p), and whether the paper's claim -- IDG better
    than every other method -- holds, i.e. every interval excludes 0 in IDG's favour."""
    rows = ev.comparisons(reference=REFERENCE)
    out = {}
    for metric in ev.metrics:
        mine = [r for r in rows if r["metric"] == metric and r["against"] in ev.methods]
        out[metric] = {
            "best": ev.best(metric),
            "idg_better_than": [r["against"] for r in mine if r["verdict"] == "better"],
            "idg_worse_than": [r["against"] for r in mine if r["verdict"] == "worse"],
            "no_difference": [r["against"] for r in mine if r["verdict"] == "no difference"],
            "claim_holds": all(r["verdict"] == "better" for r in mine),
            "beats_random": any(r["against"] == RANDOM and r["verdict"] == "better"
                                for r in rows if r["metric"] == metric)}
    return out


def inputs_of(name: str, s: dict) -> tuple[nn.Module, Tensor, list[str], Tensor]:
    """The model, its inputs, their labels and their images in [0, 1] ``(n, H, W, 3)``."""
    if name == "digits-cnn":
        model, x, _ = digits_examples(s["digits"])
        return model, x, [f"digit #{i}" for i in range(len(x))], \
            x.repeat(1, 3, 1, 1).permute(0, 2, 3, 1)
    from ..zoo import LITE1_CROP, efficientnet_lite0, efficientnet_lite1, photo_batch, unpreprocess

    lite1 = name == "efficientnet-lite1"
    model = efficientnet_lite1() if lite1 else efficientnet_lite0()
    x = photo_batch(s["photos"], LITE1_CROP if lite1 else 224)
    return model, x, list(s["photos"]), unpreprocess(x).permute(0, 2, 3, 1)


def run(out_dir: Path, quick: bool = False) -> dict:
    """Run the IDG reproduction and write ``out_dir``; returns the ``results.json`` document.

    Cost (full): per photo and model about 690 gradient evaluations (IG/left-IG/IDG 50 each,
    IDG's 48 forward-only coarse points, Guided IG 100, AGI <= 4 x 20 x 2, Blur IG 50,
    SmoothGrad-IG 8 x 20), and per method 4 curves of 225 (Lite1: 258) forward passes
    (insertion, deletion, their inverse controls) plus 20 for ROAD, and the random control
    once -- about 8,000 forwards per photo and model, the bulk of the time. ``quick``: 3
    methods on 6 digits with the digits CNN, seconds.
    """
    s = QUICK if quick else FULL
    s = {**s, "n_photos": s["digits"] if quick else len(s["photos"])}
    s["min_p"] = 2 * 0.5 ** s["n_photos"]
    models, figures = {}, {}
    with timer() as total:
        for name in s["models"]:
            model, x, labels, images = inputs_of(name, s)
            cls, conf = predict(model, x)
            if quick:
                names = [str(int(c)) for c in cls]
            else:
                from ..zoo import class_name

                names = [class_name(int(c)) for c in cls]
            ev, attrs, seconds = evaluate(model, x, labels, s)
            models[name] = {"evaluation": ev, "seconds_per_image": seconds,
                            "inputs": [{"input": lab, "class": int(c), "name": n,
                                        "probability": float(p)}
                                       for lab, c, n, p in zip(labels, cls, names, conf)],
                            "verdict": verdict(ev)}
            figures[f"curves_{name}"] = curves_figure(ev.curves, kinds=s["metrics"])
            for i in range(min(s["heatmaps"], len(x))):
                stem = safe_name(f"heatmaps_{name}_{labels[i]}", set(figures))
                figures[stem] = method_grid(
                    images[i].numpy(), {m: a[i] for m, a in attrs.items()},
                    {m: f"ins {ev.auc[m]['insertion'][i]:.3f} "
                        f"del {ev.auc[m]['deletion'][i]:.3f}" for m in attrs})
    numbers = {"excluded": {} if quick else EXCLUDED,
               "models": {n: {"inputs": r["inputs"], "verdict": r["verdict"],
                              "seconds_per_image": r["seconds_per_image"],
                              **r["evaluation"].to_dict(REFERENCE)}
                          for n, r in models.items()}}
    return write_results(out_dir, "idg", s, numbers, _report(s, quick, models, total["s"]),
                         figures, total["s"])


def _report(s: dict, quick: bool, models: dict, seconds: float) -> str:
    parts = [
        "# IDG reproduction (Walker et al. 2023)",
        "Excluded photos: " + ("; ".join(f"{k}: {why}" for k, why in EXCLUDED.items())
                               if not quick else "none (digits correctly classified)") + ".",
        f"Protocol: zero baseline in the normalised input space; IG/left-IG/IDG/Blur IG/"
        f"SmoothGrad-IG explain the logit, Guided IG the softmax probability; {s['steps']} "
        f"steps for IG, left-IG (fraction {s['left_fraction']}) and IDG (adaptive: "
        f"{s['coarse_steps']} coarse points); saliency |sum over channels|; RISE insertion "
        f"(blur substrate, 11x11, sigma 5) and deletion (zero substrate), {s['pixels_per_step']}"
        f" pixels per step; ROAD (noisy linear imputation, noise 0.01, 10 % steps) most and "
        f"least relevant first; softmax probability of the predicted class, trapezoid AUC. "
        f"Controls: each method's inverse ranking (least important first) and a seeded random "
        f"ranking per image. Intervals: 95 % percentile bootstrap over the images; comparisons:"
        f" paired differences (IDG minus the other), bootstrap interval and two-sided Wilcoxon "
        f"signed-rank p. Total time {seconds:.0f} s (load in results.json).",
        "Deviations: " + "; ".join(d.format(**s) for d in DEVIATIONS) + ".",
    ]
    for name, r in models.items():
        ev = r["evaluation"]
        used = ", ".join(f"{d['input']} -> {d['name']} ({d['probability']:.2f})"
                         for d in r["inputs"])
        auc, comp = ev.tables(REFERENCE)
        secs = table(["method", "time s / image"],
                     [[m, f"{v:.1f}"] for m, v in r["seconds_per_image"].items()])
        parts += [f"## {name}", f"Inputs ({len(r['inputs'])}): {used}.",
                  "Mean AUC [95 % bootstrap interval]:", table(auc.headers, auc.rows),
                  f"{REFERENCE} against each method (difference = IDG minus it):",
                  table(comp.headers, comp.rows), secs, "Claims:"]
        for metric, v in r["verdict"].items():
            parts.append(
                f"- {metric}: best mean {v['best']}; IDG better than "
                f"{', '.join(v['idg_better_than']) or 'none'}; worse than "
                f"{', '.join(v['idg_worse_than']) or 'none'}; no clear difference from "
                f"{', '.join(v['no_difference']) or 'none'}. The paper's claim (IDG better than"
                f" every method) {'holds' if v['claim_holds'] else 'does not hold'} here; IDG "
                f"{'beats' if v['beats_random'] else 'does not clearly beat'} the random "
                f"ranking.")
    return "\n\n".join(parts)
