"""Dhamdhere et al. 2018 (*How Important Is a Neuron?*) and Shrikumar et al. 2018
(*Computationally Efficient Measures of Internal Neuron Importance*), on the digits CNN and on
EfficientNet-Lite0:

(a) Total Conductance by Dhamdhere's formula (``NeuronConductance``: the chain rule through each
    neuron's Jacobian, summed over input features) against Neuron IG (``LayerConductance``: the
    path integral in the layer's space), on the same neurons and path;
(b) time against the number of neurons explained: Neuron IG is one pass for the whole layer,
    Dhamdhere's form pays per neuron;
(c) channel ablation (reset the top-k channels to their activation at the zero baseline) for
    Neuron IG at several step counts, DeepLIFT Rescale and RevealCancel, gradient x activation,
    activation and random rankings, with the time of each score. The paper's finding: DeepLIFT
    ranks about as well as Neuron IG at a fraction of the cost.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from ..engine import guarded
from ..forward import choose_output
from ..layers import Tap, resolve_layer, tap_layers
from ..methods.conductance import LayerConductance, NeuronConductance
from ..methods.deeplift import LayerDeepLift
from ..methods.deeplift.method import Nonlinearity
from ..metrics import bootstrap, compare, neuron_ablation, random_scores
from ..targets import select
from .common import digits_examples, fmt, predict, progress, table, timer, write_results

FULL = {
    "digits": {"layer": "features.relu2", "images": 32, "agreement_inputs": 32,
               "agreement_steps": (8, 32, 128),
               "neuron_counts": (1, 4, 16, 64, 256), "ablation_steps": (1, 4, 16, 64)},
    "efficientnet": {"layer": "_blocks.11", "photos": ("chelsea", "coffee", "camera", "rocket"),
                     "agreement_inputs": 1,
                     "agreement_steps": (16,), "neuron_counts": (1, 2, 4, 8),
                     "ablation_steps": (1, 4, 16, 64)},
    "random_seeds": 3,
}
QUICK = {
    "digits": {"layer": "features.relu2", "images": 4, "agreement_inputs": 4,
               "agreement_steps": (8, 64),
               "neuron_counts": (1, 8), "ablation_steps": (2, 16)},
    "random_seeds": 2,
}


def layer_gradient(model: nn.Module, layer: str, x: Tensor, target: Tensor
                   ) -> tuple[Tensor, Tensor]:
    """The layer's activation at ``x`` and the target's gradient with respect to it.
    Cost: one forward and one backward down to the layer."""
    name, module = resolve_layer(model, layer)
    with guarded(model), torch.enable_grad(), tap_layers(
            model, [Tap(name, False, lambda t: t.detach().requires_grad_(True))]) as (tap,):
        out = select(choose_output(model(x)), target)
        act = tap.check()
        (grad,) = torch.autograd.grad(out.sum(), act)
    return act.detach(), grad


def channels(a: Tensor) -> Tensor:
    """Per-channel totals ``(B, C)`` of a ``(B, C, H, W)`` neuron score."""
    return a.flatten(2).sum(2)


def agreement(model: nn.Module, x: Tensor, target: Tensor, layer: str, s: dict) -> list[dict]:
    """(a) and (b): per step count, Neuron IG over the whole layer (timed) and Dhamdhere's total
    conductance for the top ``n`` neurons (by |Neuron IG| on the first input) for each ``n`` in
    ``neuron_counts`` (timed); the largest differences on those neurons. Cost: per step count
    one ``LayerConductance`` call and ``sum(neuron_counts)`` neurons' ``NeuronConductance``."""
    out = []
    for steps in s["agreement_steps"]:
        with timer() as t:
            nig = LayerConductance(model, layer).attribute(x, target=target, steps=steps)
        flat = nig.tensor.flatten(1)
        top = flat[0].abs().argsort(descending=True)
        row = {"steps": steps, "neuron_ig_seconds": t["s"], "n_neurons_layer": flat.shape[1],
               "output_delta": nig.info["output_delta"], "neuron_ig_completeness_gap":
               (nig.delta / nig.info["output_delta"]).abs().max(), "dhamdhere": []}
        for n in s["neuron_counts"]:
            idx = top[:n]
            with timer() as t:
                nc = NeuronConductance(model, layer).attribute(x, neurons=idx.tolist(),
                                                               target=target, steps=steps)
            tc = nc.info["total_conductance"].T            # (B, n)
            diff = (tc - flat[:, idx]).abs()
            row["dhamdhere"].append({
                "neurons": n, "seconds": t["s"],
                "max_abs_diff": diff.max(),
                "max_diff_over_output_delta":
                    (diff / nig.info["output_delta"].abs()[:, None]).max(),
                "max_diff_over_largest_neuron": (diff.amax(1) / flat.abs().amax(1)).max()})
        out.append(row)
    return out


def ablation(model: nn.Module, x: Tensor, target: Tensor, layer: str, s: dict, seeds: int
             ) -> dict:
    """(c): channel scores of every method with their time, and the ablation curve of each;
    AUCs scaled per input by ``F(x) - F(x')`` (resetting every channel gives 1 when the layer
    separates input from output). Cost: the scores, then ``B x ~21`` forward passes per ranking.
    """
    scores: dict[str, Tensor] = {}
    seconds: dict[str, float] = {}
    for steps in s["ablation_steps"]:
        with timer() as t:
            r = LayerConductance(model, layer).attribute(x, target=target, steps=steps)
        scores[f"Neuron IG ({steps} steps)"] = channels(r.tensor)
        seconds[f"Neuron IG ({steps} steps)"] = t["s"]
    out_delta = r.info["output_delta"]
    rules: tuple[tuple[Nonlinearity, str], ...] = (("rescale", "DeepLIFT Rescale"),
                                                   ("revealcancel", "DeepLIFT RevealCancel"))
    for rule, label in rules:
        with timer() as t:
            scores[label] = channels(LayerDeepLift(model, layer, nonlinearity=rule).attribute(
                x, target=target).tensor)
        seconds[label] = t["s"]
    with timer() as t:
        act, grad = layer_gradient(model, layer, x, target)
        scores["gradient x activation"] = channels(grad * act)
    seconds["gradient x activation"] = t["s"]
    scores["activation"] = channels(act)
    seconds["activation"] = t["s"]  # the same pass gives both; the gradient is not needed
    curves = {}
    for name, sc in scores.items():
        c = neuron_ablation(model, x, layer, sc, target=target)
        curves[name] = {"fractions": c.fractions, "scores": c.scores / out_delta[:, None],
                        "auc": c.auc / out_delta, "seconds": seconds[name]}
    g = torch.Generator().manual_seed(0)
    rand = [neuron_ablation(model, x, layer, random_scores(sc.shape, g), target=target)
            for _ in range(seeds)]
    curves["random"] = {"fractions": rand[0].fractions, "seconds": 0.0,
                        "scores": torch.stack([c.scores for c in rand]).mean(0)
                        / out_delta[:, None],
                        "auc": torch.stack([c.auc for c in rand]).mean(0) / out_delta}
    return curves


def verdict(curves: dict) -> dict[str, object]:
    """The paper's claim on one model: DeepLIFT's ablation AUC close to the best Neuron IG's
    (within 5 % of its gap over random) and DeepLIFT much faster (at least 5x)."""
    auc = {k: float(v["auc"].mean()) for k, v in curves.items()}
    nig = max((k for k in auc if k.startswith("Neuron IG")), key=lambda k: auc[k])
    span = auc[nig] - auc["random"]
    out = {"best_neuron_ig": nig,
           "against_random": {m: _paired(c["auc"], curves["random"]["auc"])
                              for m, c in curves.items() if m != "random"}}
    for dl in ("DeepLIFT Rescale", "DeepLIFT RevealCancel"):
        close = auc[dl] >= auc[nig] - 0.05 * abs(span)
        speed = curves[nig]["seconds"] / max(curves[dl]["seconds"], 1e-9)
        out[dl] = {"auc_minus_best_neuron_ig": auc[dl] - auc[nig], "speedup": speed,
                   "paired": _paired(curves[dl]["auc"], curves[nig]["auc"]),
                   "close": close, "much_faster": speed >= 5, "holds": close and speed >= 5}
    return out


def _paired(a: Tensor, b: Tensor) -> dict[str, object]:
    """``metrics.compare`` of per-input AUCs: the difference's interval, p-value, verdict."""
    c = compare(a.double().numpy(), b.double().numpy())
    return {"difference": vars(c.difference), "p_value": c.p_value, "verdict": c.verdict}


def study(model: nn.Module, x: Tensor, s: dict, seeds: int) -> dict:
    """(a) and (b) on the first ``agreement_inputs`` inputs, (c) on all of them."""
    target, _ = predict(model, x)
    k = s["agreement_inputs"]
    # untimed warm-up: the first calls pay for thread pools, allocator growth and vmap setup
    LayerConductance(model, s["layer"]).attribute(x[:1], target=target[:1], steps=2)
    NeuronConductance(model, s["layer"]).attribute(x[:1], neurons=[0], target=target[:1], steps=2)
    progress(f"neurons: Dhamdhere vs Neuron IG on layer {s['layer']}, then ablation")
    return {"layer": s["layer"], "inputs": len(x), "target": target,
            "agreement": agreement(model, x[:k], target[:k], s["layer"], s),
            "ablation": ablation(model, x, target, s["layer"], s, seeds)}


def ablation_figure(results: dict[str, dict]) -> Figure:
    """Mean ablation curve per method, one panel per model."""
    fig = Figure(figsize=(6 * len(results), 4.2))
    for i, (name, res) in enumerate(results.items()):
        ax = fig.add_subplot(1, len(results), i + 1)
        for method, c in res["ablation"].items():
            ax.plot(np.asarray(c["fractions"]), np.asarray(c["scores"].mean(0)), lw=1,
                    ls=":" if method in ("random", "activation") else "-",
                    label=f"{method} (AUC {float(c['auc'].mean()):.3f})")
        ax.set(xlabel="fraction of channels reset to baseline",
               ylabel="(F(x) - F(ablated)) / (F(x) - F(x'))",
               title=f"{name}, layer {res['layer']}, {res['inputs']} inputs")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.12, top=0.92, wspace=0.25)
    return fig


def timing_figure(results: dict[str, dict]) -> Figure:
    """Seconds against neurons explained: Dhamdhere per neuron set, Neuron IG for the layer."""
    fig = Figure(figsize=(5 * len(results), 3.8))
    for i, (name, res) in enumerate(results.items()):
        ax = fig.add_subplot(1, len(results), i + 1)
        for row in res["agreement"]:
            n = [d["neurons"] for d in row["dhamdhere"]]
            line, = ax.plot(n, [d["seconds"] for d in row["dhamdhere"]], marker="o",
                            label=f"Dhamdhere, {row['steps']} steps")
            ax.axhline(row["neuron_ig_seconds"], color=line.get_color(), ls="--",
                       label=f"Neuron IG, all {row['n_neurons_layer']} neurons")
        ax.set(xscale="log", yscale="log", xlabel="neurons explained", ylabel="seconds",
               title=name)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.14, top=0.9, wspace=0.3)
    return fig


def run(out_dir: Path, quick: bool = False) -> dict:
    """Run the neuron-importance reproduction and write ``out_dir``; returns the JSON document.

    Cost (full): seconds on the digits CNN; on EfficientNet-Lite0 about 330 path points of
    Neuron IG per photo, 15 neurons x 16 points of per-neuron Jacobian products on one photo and
    ~1,000 forward passes of ablation -- a few minutes unloaded. ``quick``: digits only, seconds.
    """
    s = QUICK if quick else FULL
    results = {}
    with timer() as total:
        model, x, _ = digits_examples(s["digits"]["images"])
        results["digits CNN"] = study(model, x, s["digits"], s["random_seeds"])
        if "efficientnet" in s:
            from ..zoo import efficientnet_lite0, photo_batch

            e = s["efficientnet"]
            results["EfficientNet-Lite0"] = study(efficientnet_lite0(), photo_batch(e["photos"]),
                                                  e, s["random_seeds"])
    verdicts = {name: verdict(res["ablation"]) for name, res in results.items()}
    figures = {"ablation": ablation_figure(results), "timing": timing_figure(results)}
    numbers = {"models": results, "verdicts": verdicts}
    return write_results(out_dir, "neurons", s, numbers, _report(results, verdicts, total["s"]),
                         figures, total["s"])


def _report(results: dict, verdicts: dict, seconds: float) -> str:
    parts = ["# Neuron importance reproduction (Dhamdhere et al. 2018; Shrikumar et al. 2018)",
             f"Target: the predicted class's logit; baseline: zero input; Gauss-Legendre nodes. "
             f"Total time {seconds:.0f} s (see results.json for the machine's load)."]
    rows_a, rows_b = [], []
    for name, res in results.items():
        for row in res["agreement"]:
            d = row["dhamdhere"][-1]
            rows_a.append([name, res["layer"], row["steps"], d["neurons"], float(d["max_abs_diff"]),
                           float(d["max_diff_over_output_delta"]),
                           float(d["max_diff_over_largest_neuron"]),
                           float(row["neuron_ig_completeness_gap"])])
            rows_b += [[name, row["steps"], d["neurons"], f"{d['seconds']:.2f}",
                        f"{row['neuron_ig_seconds']:.2f} (all {row['n_neurons_layer']})"]
                       for d in row["dhamdhere"]]
    parts += ["## (a) Total Conductance: Dhamdhere's formula vs Neuron IG",
              "Same path and nodes; neurons: the top ones by |Neuron IG| on the first input. The "
              "two are different discretisations of one integral (derivative vs cell "
              "difference), so they agree up to quadrature error and converge together.",
              table(["model", "layer", "steps", "neurons", "max abs diff", "/ |F(x)-F(x')|",
                     "/ largest neuron", "Neuron IG completeness gap"], rows_a),
              "## (b) Time against neurons explained",
              table(["model", "steps", "neurons (Dhamdhere)", "Dhamdhere s",
                     "Neuron IG s (neurons)"], rows_b),
              "## (c) Channel ablation",
              "Reset the top-k channels (ranked by each method's channel total) to their "
              "activation at the zero input; AUC of `(F(x) - F(ablated)) / (F(x) - F(x'))` over "
              "the fraction of channels (higher is better). Random: mean of seeded rankings."]
    for name, res in results.items():
        v = verdicts[name]
        vs_random = v["against_random"]
        rows = [[m, str(bootstrap(c["auc"].double().numpy())), f"{c['seconds']:.3f}",
                 *(_cells(vs_random[m]) if m in vs_random else ["-", "-"])]
                for m, c in res["ablation"].items()]
        parts += [f"### {name} (layer {res['layer']}, {res['inputs']} inputs)",
                  table(["method", "ablation AUC [95 % bootstrap interval]", "time s",
                         "minus random [95 %], Wilcoxon p", "verdict vs random"], rows)]
        for dl in ("DeepLIFT Rescale", "DeepLIFT RevealCancel"):
            d = v[dl]
            diff, said = _cells(d["paired"])
            parts.append(f"- {dl} vs {v['best_neuron_ig']}: AUC difference {diff} ({said}), "
                         f"{fmt(d['speedup'])}x faster -> claim "
                         f"{'holds' if d['holds'] else 'does not hold'} "
                         f"(close: {'yes' if d['close'] else 'no'}, >= 5x faster: "
                         f"{'yes' if d['much_faster'] else 'no'}).")
    return "\n\n".join(parts)


def _cells(paired: dict) -> list[str]:
    d = paired["difference"]
    return [f"{d['mean']:.4g} [{d['low']:.4g}, {d['high']:.4g}], p {paired['p_value']:.3g}",
            {"a > b": "better", "a < b": "worse"}.get(paired["verdict"], "no difference")]
