"""Walker, Jha, Chen, Ewetz 2023, *Integrated Decision Gradients*: insertion and deletion AUCs
(RISE protocol) of IDG and the methods it is compared against, plus ROAD (MoRF, LeRF) and the
controls (each method's inverse ranking, a random ranking), with the time of each method; mean
AUCs with bootstrap intervals, paired comparisons of IDG against each method with Holm's
correction, effect sizes and the inputs each undecided comparison would need
(``pathattr.evaluation``).

Data (``data``): ``"photos"``, EfficientNet-Lite0 and -Lite1 on every bundled photo both
classify sensibly (6: low power, no claim can be decided); ``"digits"``, the seeded digits CNN
on the first ``inputs`` (default 300) of scikit-learn's 359 held-out digits; ``"mnist1d"``, the
seeded MNIST-1D 1-D CNN on the first ``inputs`` of its 1000 held-out signals (seen as images
one pixel high). Held-out inputs are taken in order, right or wrong, each explained for its
predicted class.

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

from ..evaluation import Evaluation, Evaluator, power_note
from ..files import safe_name
from ..methods.agi import AdversarialGradientIntegration
from ..methods.blur_ig import BlurIntegratedGradients
from ..methods.guided_ig import GuidedIntegratedGradients
from ..methods.idg import IntegratedDecisionGradients
from ..methods.idgi import IDGI
from ..methods.integrated_gradients import IntegratedGradients
from ..methods.left_ig import LeftIntegratedGradients
from ..methods.smoothgrad import SmoothGrad
from ..viz import curves_figure, method_grid
from ..viz.curves import RANDOM
from .common import digits_examples, predict, progress, table, timer, write_results

METHODS = ("IG", "left-IG", "Guided IG", "AGI", "IDG (uniform)", "IDG (adaptive)", "Blur IG",
           "SmoothGrad-IG", "IDGI")
DATA = ("photos", "digits", "mnist1d")

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
    # scikit-image's other bundled images (skimage.data) and matplotlib's one other photo
    # (sample_data/Minduka_Present_Blue_Pack.png): not photos of an ImageNet object, and both
    # models say so; measured 2026-12-03
    "skimage clock": "'bubble' (0.57) / 'spotlight' (0.16): a grey wall clock, both wrong",
    "skimage horse": "'Black and Tan Coonhound' (0.16) / 'Great Dane' (0.27): a silhouette",
    "skimage coins": "'bubble' (0.13) / 'spotlight' (0.08): grey coins, no ImageNet class",
    "skimage brick, grass, gravel": "'maze' / 'soccer ball' / 'doormat' (<= 0.37): textures",
    "skimage cell, immunohistochemistry, retina": "'cassette' / 'wool' / 'lampshade' (<= "
                                                 "0.27): microscopy and fundus images",
    "skimage moon, hubble_deep_field": "'nematode' (0.47) / 'flatworm' (0.13): astronomy",
    "skimage page, text, logo": "'brass memorial plaque' / 'maze' / 'plectrum': text, a logo",
    "skimage palisades_of_vogt": "needs a download (pooch), not installed offline",
    "matplotlib Minduka_Present_Blue_Pack": "'joystick' (0.10) / 'hook' (0.04): both wrong",
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
#: Held-out sets: every method at the paper's settings, one pixel (sample) per curve step;
#: Blur IG's largest sigma scaled like the paper's 50 pixels on 224 (8 / 224 * 50 ~ 2).
SMALL = {**FULL, "steps": 50, "pixels_per_step": 1, "inputs": 300, "heatmaps": 3,
         "smoothgrad_samples": 16}
HELD_OUT = {"digits": {**SMALL, "models": ("digits-cnn",), "blur_max_sigma": 2.0},
            "mnist1d": {**SMALL, "models": ("mnist1d-cnn",), "blur_max_sigma": 9.0}}
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
HELD_OUT_DEVIATIONS = [
    "a small CNN on held-out {data} instead of ResNets on ImageNet (which does not install "
    "offline): {n_inputs} inputs",
    "Guided IG with {guided_steps} steps, SmoothGrad-IG with {smoothgrad_samples} samples x "
    "{smoothgrad_ig_steps} IG steps, Blur IG up to sigma {blur_max_sigma} (the paper's 50 of "
    "224 pixels, scaled); AGI explains the logit with the {agi_classes} highest false classes",
]


def softmax_of(c: int) -> Callable[[Tensor], Tensor]:
    """Target: the softmax probability of class ``c`` (rows of one example only)."""
    return lambda out: out.softmax(-1)[:, c]


def attribute(name: str, model: nn.Module, x: Tensor, target: Tensor, s: dict) -> Tensor:
    """The attributions of method ``name`` for images ``x`` (shape of ``x``).
    Cost: see ``run``'s docstring; Guided IG runs per image (its softmax target is per class)."""
    if name == "IG":
        return IntegratedGradients(model).attribute(x, target=target,
                                                    steps=s["steps"]).tensor
    if name == "left-IG":
        return LeftIntegratedGradients(model).attribute(
            x, target=target, steps=s["steps"], saturation=s["left_fraction"]).tensor
    if name == "IDGI":
        return IDGI(model).attribute(x, target=target, steps=s["steps"]).tensor
    if name.startswith("IDG ("):
        sampling = "uniform" if "uniform" in name else "adaptive"
        return IntegratedDecisionGradients(model).attribute(
            x, target=target, steps=s["steps"], sampling=sampling,
            coarse_steps=s["coarse_steps"]).tensor
    if name == "Guided IG":
        gig = GuidedIntegratedGradients(model)
        return torch.cat([gig.attribute(x[i:i + 1], target=softmax_of(int(t)),
                                        steps=s["guided_steps"], fraction=s["guided_fraction"],
                                        max_dist=s["guided_max_dist"]).tensor
                          for i, t in enumerate(target)])
    if name == "AGI":
        return AdversarialGradientIntegration(model).attribute(
            x, target=target, epsilon=s["agi_epsilon"], steps=s["agi_steps"],
            classes=s["agi_classes"]).tensor
    if name == "Blur IG":
        return BlurIntegratedGradients(model).attribute(
            x, target=target, max_sigma=s["blur_max_sigma"], steps=s["blur_steps"]).tensor
    if name == "SmoothGrad-IG":
        sg = SmoothGrad(IntegratedGradients(model), samples=s["smoothgrad_samples"],
                        sigma=s["smoothgrad_sigma"])
        return sg.attribute(x, target=target, steps=s["smoothgrad_ig_steps"]).tensor
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
    differences, bootstrap interval, Holm-adjusted Wilcoxon p), and the paper's claim -- IDG
    better than every other method: "holds" (every comparison decided in IDG's favour), "does
    not hold" (at least one decided against it) or "cannot be decided" (none against, some
    undecided), with the inputs each undecided comparison would need for 80 % power."""
    rows = ev.comparisons(reference=REFERENCE)
    out = {}
    for metric in ev.metrics:
        mine = [r for r in rows if r["metric"] == metric and r["against"] in ev.methods]
        better = [r["against"] for r in mine if r["verdict"] == "better"]
        worse = [r["against"] for r in mine if r["verdict"] == "worse"]
        open_ = [r for r in mine if r["verdict"] == "no difference"]
        claim = "does not hold" if worse else "cannot be decided" if open_ else "holds"
        out[metric] = {
            "best": ev.best(metric), "idg_better_than": better, "idg_worse_than": worse,
            "no_difference": [r["against"] for r in open_],
            "inputs_needed": {r["against"]: r["inputs_needed"] for r in open_},
            "claim": claim, "claim_holds": claim == "holds",
            "beats_random": any(r["against"] == RANDOM and r["verdict"] == "better"
                                for r in rows if r["metric"] == metric)}
    return out


def inputs_of(name: str, s: dict) -> tuple[nn.Module, Tensor, list[str], Tensor]:
    """The model, its inputs, their labels and their images in [0, 1] ``(n, H, W, 3)`` for
    the pictures (an MNIST-1D signal: its standardised values squashed into [0, 1], one row)."""
    if name == "digits-cnn" and "inputs" not in s:  # the quick run: correctly classified
        model, x, _ = digits_examples(s["digits"])
        return model, x, [f"digit #{i}" for i in range(len(x))], \
            x.repeat(1, 3, 1, 1).permute(0, 2, 3, 1)
    if name == "digits-cnn":
        from ..zoo import digits_cnn, digits_data

        x = digits_data()[2][:s["inputs"]]
        return digits_cnn(), x, [f"test #{i}" for i in range(len(x))], \
            x.repeat(1, 3, 1, 1).permute(0, 2, 3, 1)
    if name == "mnist1d-cnn":
        from ..evaluation import Signals
        from ..zoo.mnist1d import mnist1d_cnn, mnist1d_data

        x = mnist1d_data()[2][:s["inputs"], :, None]  # (n, 1, 1, 40)
        picture = torch.sigmoid(x).repeat(1, 3, 1, 1).permute(0, 2, 3, 1)
        return Signals(mnist1d_cnn()), x, [f"test #{i}" for i in range(len(x))], picture
    from ..zoo import LITE1_CROP, efficientnet_lite0, efficientnet_lite1, photo_batch, unpreprocess

    lite1 = name == "efficientnet-lite1"
    model = efficientnet_lite1() if lite1 else efficientnet_lite0()
    x = photo_batch(s["photos"], LITE1_CROP if lite1 else 224)
    return model, x, list(s["photos"]), unpreprocess(x).permute(0, 2, 3, 1)


def settings(data: str, quick: bool, inputs: int | None) -> dict:
    """The run's settings: ``FULL`` (photos), ``HELD_OUT[data]``, or ``QUICK`` (digits, 3
    methods, 6 inputs; with a held-out ``data``, its model and 6 of its inputs)."""
    if data not in DATA:
        raise ValueError(f"data must be one of {', '.join(DATA)}, got {data!r}")
    if inputs is not None and (isinstance(inputs, bool) or not isinstance(inputs, int)
                               or inputs < 2):
        raise ValueError(f"inputs must be an integer >= 2 (a paired test needs two), got "
                         f"{inputs!r}")
    if quick:
        small = ("methods", "steps", "coarse_steps", "heatmaps", "pixels_per_step")
        s = dict(QUICK) if data == "photos" else {
            **HELD_OUT[data], **{k: QUICK[k] for k in small}, "inputs": inputs or 6}
    else:
        s = dict(FULL) if data == "photos" else {**HELD_OUT[data], "inputs": inputs or 300}
    n = (s["digits"] if quick else len(s["photos"])) if data == "photos" else s["inputs"]
    return {**s, "data": data, "n_inputs": n, "n_photos": n, "min_p": 2 * 0.5 ** n}


def run(out_dir: Path, quick: bool = False, data: str = "photos", inputs: int | None = None
        ) -> dict:
    """Run the IDG reproduction on ``data`` (module docstring) and write ``out_dir``; returns
    the ``results.json`` document.

    Cost (photos): per photo and model about 740 gradient evaluations (IG/left-IG/IDG/IDGI 50
    each, IDG's 23 forward-only coarse points, Guided IG 100, AGI <= 4 x 20 x 2, Blur IG 50,
    SmoothGrad-IG 8 x 20), and per method 4 curves of 225 (Lite1: 258) forward passes
    (insertion, deletion, their inverse controls) plus 20 for ROAD, and the random control
    once -- about 9,000 forwards per photo and model, the bulk of the time. Held-out data:
    the same per input on a model thousands of times smaller, with 65 (digits) or 41 (MNIST-1D)
    forwards per curve; minutes for 300 inputs. ``quick``: 3 methods on 6 inputs, seconds.
    """
    s = settings(data, quick, inputs)
    models, figures = {}, {}
    with timer() as total:
        for name in s["models"]:
            model, x, labels, images = inputs_of(name, s)
            cls, conf = predict(model, x)
            if data != "photos" or quick:
                names = [str(int(c)) for c in cls]
            else:
                from ..zoo import class_name

                names = [class_name(int(c)) for c in cls]
            ev, attrs, seconds = evaluate(model, x, labels, s)
            entry = {"evaluation": ev, "seconds_per_image": seconds,
                     "inputs": [{"input": lab, "class": int(c), "name": n,
                                 "probability": float(p)}
                                for lab, c, n, p in zip(labels, cls, names, conf)],
                     "verdict": verdict(ev)}
            if data != "photos":
                entry["accuracy"] = held_out_accuracy(name, cls, s)
            models[name] = entry
            figures[f"curves_{name}"] = curves_figure(ev.curves, kinds=s["metrics"])
            for i in range(min(s["heatmaps"], len(x))):
                stem = safe_name(f"heatmaps_{name}_{labels[i]}", set(figures))
                tall = 6 if x.shape[-2] == 1 else 1  # a signal: a strip six rows high
                figures[stem] = method_grid(
                    images[i].repeat(tall, 1, 1).numpy(),
                    {m: a[i].repeat(1, tall, 1) for m, a in attrs.items()},
                    {m: f"ins {ev.auc[m]['insertion'][i]:.3f} "
                        f"del {ev.auc[m]['deletion'][i]:.3f}" for m in attrs})
    numbers = {"excluded": EXCLUDED if data == "photos" and not quick else {},
               "models": {n: {"inputs": r["inputs"], "verdict": r["verdict"],
                              "seconds_per_image": r["seconds_per_image"],
                              **({"accuracy": r["accuracy"]} if "accuracy" in r else {}),
                              **r["evaluation"].to_dict(REFERENCE)}
                          for n, r in models.items()}}
    return write_results(out_dir, "idg", s, numbers, _report(s, quick, models, total["s"]),
                         figures, total["s"])


def held_out_accuracy(name: str, predicted: Tensor, s: dict) -> float:
    """The model's accuracy on the inputs explained (their held-out labels)."""
    if name == "digits-cnn" and "inputs" not in s:
        return 1.0  # the quick run keeps correctly classified digits only
    if name == "digits-cnn":
        from ..zoo import digits_data

        labels = digits_data()[3]
    else:
        from ..zoo.mnist1d import mnist1d_data

        labels = mnist1d_data()[3]
    return float((predicted == labels[:len(predicted)]).double().mean())


def _report(s: dict, quick: bool, models: dict, seconds: float) -> str:
    photos = s["data"] == "photos" and not quick
    if photos:
        header = ["Excluded photos: " + "; ".join(f"{k}: {why}" for k, why in EXCLUDED.items())
                  + ".", f"**Low power**: {s['n_inputs']} inputs, so no comparison can reach a "
                  f"Wilcoxon p below {s['min_p']:.3g} before Holm's correction; the held-out "
                  f"runs (`--data digits`, `--data mnist1d`) are the evidence."]
        deviations = DEVIATIONS
    else:
        header = [f"Inputs: the first {s['n_inputs']} held-out {s['data']} inputs, right or "
                  f"wrong, each explained for its predicted class."]
        deviations = HELD_OUT_DEVIATIONS
    parts = [
        "# IDG reproduction (Walker et al. 2023)", *header,
        f"Protocol: zero baseline in the normalised input space; IG/left-IG/IDG/IDGI/Blur IG/"
        f"SmoothGrad-IG explain the logit, Guided IG the softmax probability; {s['steps']} "
        f"steps for IG, left-IG (fraction {s['left_fraction']}), IDGI and IDG (adaptive: "
        f"{s['coarse_steps']}-point coarse grid); saliency |sum over channels|; RISE insertion "
        f"(blur substrate, 11x11, sigma 5) and deletion (zero substrate), {s['pixels_per_step']}"
        f" pixel(s) per step; ROAD (noisy linear imputation, noise 0.01, 10 % steps) most and "
        f"least relevant first; softmax probability of the predicted class, trapezoid AUC. "
        f"Controls: each method's inverse ranking (least important first) and a seeded random "
        f"ranking per input. Intervals: 95 % percentile bootstrap over the inputs; comparisons:"
        f" paired differences (IDG minus the other), bootstrap interval, two-sided Wilcoxon "
        f"signed-rank p adjusted by Holm within each metric, Cohen's d_z, rank-biserial r, and "
        f"the inputs a comparison of that effect would need for 80 % power. Total time "
        f"{seconds:.0f} s (load in results.json).",
        "Deviations: " + "; ".join(d.format(**s) for d in deviations) + ".",
    ]
    for name, r in models.items():
        ev = r["evaluation"]
        shown = r["inputs"] if photos else r["inputs"][:0]
        used = ", ".join(f"{d['input']} -> {d['name']} ({d['probability']:.2f})"
                         for d in shown)
        auc, comp = ev.tables(REFERENCE)
        secs = table(["method", "time ms / input"],
                     [[m, f"{1e3 * v:.1f}"] for m, v in r["seconds_per_image"].items()])
        acc = f" Held-out accuracy on them: {r['accuracy']:.1%}." if "accuracy" in r else ""
        parts += [f"## {name}", f"Inputs ({len(r['inputs'])}){': ' + used if used else ''}."
                  + acc, "Mean AUC [95 % bootstrap interval]:", table(auc.headers, auc.rows),
                  f"{REFERENCE} against each method (difference = IDG minus it):",
                  table(comp.headers, comp.rows), power_note(ev, REFERENCE) + ".", secs,
                  "Claims:"]
        for metric, v in r["verdict"].items():
            need = ", ".join(f"{m} ({'no effect seen' if n == float('inf') else f'{n:.0f}'})"
                             for m, n in v["inputs_needed"].items())
            parts.append(
                f"- {metric}: best mean {v['best']}; IDG better than "
                f"{', '.join(v['idg_better_than']) or 'none'}; worse than "
                f"{', '.join(v['idg_worse_than']) or 'none'}; undecided against "
                f"{need or 'none'} (inputs needed for 80 % power). The paper's claim (IDG "
                f"better than every method) **{v['claim']}** here; IDG "
                f"{'beats' if v['beats_random'] else 'does not clearly beat'} the random "
                f"ranking.")
    return "\n\n".join(parts)
