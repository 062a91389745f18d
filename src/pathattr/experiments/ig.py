"""Sundararajan, Taly, Yan 2017, *Axiomatic Attribution for Deep Networks*: how many steps IG
needs, per quadrature rule and with the error-controlled rule, on the digits CNN and on
EfficientNet-Lite0 with bundled photos; the six axioms checked numerically on random networks;
heatmaps of a few photos.

The completeness gap of a rule depends only on ``sum_k w_k dF/da(a_k)`` with
``dF/da = grad F(x(a)) . (x - x')``, so one pass over the union of every rule's nodes gives the
gap of every (rule, steps) pair at once (Riemann rules at powers of two share nodes). That this
equals what ``IntegratedGradients`` reports is checked on every input at ``steps[1]`` steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator, ScalarFormatter
from torch import Tensor, nn

from ..call import setup
from ..engine import guarded
from ..integrate import flat_points
from ..methods.integrated_gradients import IntegratedGradients
from ..quadrature import RULES, nodes_weights
from ..viz import overlay
from .common import bar, digits_examples, fmt, predict, progress, table, timer, write_results

FULL = {"photos": ("chelsea", "coffee", "camera", "rocket"), "digits": 32,
        "steps": (4, 8, 16, 32, 64, 128), "tol": 0.01, "max_steps": 512, "heatmaps": 3,
        "axiom_nets": 5, "axiom_inputs": 16, "axiom_tol": 1e-4, "axiom_max_steps": 4096}
QUICK = {"photos": (), "digits": 6, "steps": (2, 8, 32), "tol": 0.01, "max_steps": 256,
         "heatmaps": 0, "axiom_nets": 2, "axiom_inputs": 4, "axiom_tol": 1e-4,
         "axiom_max_steps": 4096}


def rule_steps(rule: str, n: int) -> int:
    """The trapezoid rule with ``n + 1`` nodes has ``n`` cells, so it nests with Riemann at
    ``n``; every other rule uses ``n`` nodes. The plots' x-axis is nodes (gradient evaluations)."""
    return n + 1 if rule == "riemann_trapezoid" else n


def path_slopes(model: nn.Module, x: Tensor, target: Tensor, alphas: np.ndarray
                ) -> tuple[Tensor, Tensor]:
    """``F(x) - F(0)`` per example ``(B,)`` and ``dF/da`` at each alpha ``(B, len(alphas))``
    on the straight path from the zero baseline. Cost: ``len(alphas)`` forward+backward passes
    per example, two forward passes."""
    with guarded(model):
        engine = setup(model, x, 0.0, target).engine("auto")
        rows, flat_a = flat_points(len(x), torch.as_tensor(alphas, dtype=x.dtype))
        # the engine sizes its chunks on its first call: let that be the long one
        parts = []
        with bar(len(rows), "ig: gradients along the path") as shown:
            for ch in engine.gradients(rows, flat_a):
                parts.append((ch.grads[0] * engine.diff[ch.rows]).flatten(1).sum(1))
                shown.update(len(ch.rows))
        slopes = torch.cat(parts)
        f1, f0, _ = engine.ends([])
    return (f1 - f0).double(), slopes.double().reshape(len(x), len(alphas))


def sweep(model: nn.Module, x: Tensor, target: Tensor, steps: tuple[int, ...]) -> dict:
    """Signed relative completeness gap ``delta / (F(x) - F(x'))`` of every rule at every step
    count, ``{rule: (B, len(steps))}``, plus the path's ``alphas`` and ``slopes``.
    Cost: one forward+backward per distinct node of all rules (about ``4 max(steps)`` plus the
    Gauss-Legendre nodes) per example."""
    pairs = {(r, n): nodes_weights(r, rule_steps(r, n)) for r in RULES for n in steps}
    # Riemann nodes k/2^j are exact in binary; rounding merges Gauss-Legendre near-duplicates only
    alphas = np.unique(np.round(np.concatenate([a for a, _ in pairs.values()]), 14))
    out_delta, slopes = path_slopes(model, x, target, alphas)
    gaps = {r: np.zeros((len(x), len(steps))) for r in RULES}
    for (r, n), (a, w) in pairs.items():
        idx = np.searchsorted(alphas, np.round(a, 14))
        integral = slopes[:, idx] @ torch.as_tensor(w)
        gaps[r][:, steps.index(n)] = ((integral - out_delta) / out_delta).numpy()
    return {"gaps": gaps, "alphas": alphas, "slopes": slopes.numpy(),
            "output_delta": out_delta.numpy()}


def cross_check(model: nn.Module, x: Tensor, target: Tensor, n: int, sw: dict) -> float:
    """Largest difference between ``IntegratedGradients``'s relative gap and the sweep ``sw``'s,
    over every rule at ``n`` steps. Cost: ``5 n`` forward+backward passes per example."""
    ig = IntegratedGradients(model)
    col = list(sw["steps"]).index(n)
    worst = 0.0
    for r in RULES:
        res = ig.attribute(x, target=target, steps=rule_steps(r, n), rule=r)
        rel = (res.delta / res.info["output_delta"]).double().numpy()
        worst = max(worst, float(np.abs(rel - sw["gaps"][r][:, col]).max()))
    return worst


def error_controlled(model: nn.Module, x: Tensor, target: Tensor, tol: float,
                     max_steps: int) -> tuple[dict, Tensor]:
    """IG with ``steps="auto"``: per example the relative gap, gradient evaluations and whether
    ``tol`` was met; and the attributions. Cost: the adaptive number of evaluations."""
    with timer() as t:
        res = IntegratedGradients(model).attribute(x, target=target, steps="auto", tol=tol,
                                                   max_steps=max_steps)
    rel = (res.delta / res.info["output_delta"]).abs()
    return {"relative_gap": rel.numpy(), "evaluations": res.info["gradient_evaluations"].numpy(),
            "converged": res.info["converged"].numpy(), "seconds": t["s"]}, res.tensor


def study(model: nn.Module, x: Tensor, s: dict) -> tuple[dict, Tensor, Tensor]:
    """The sweep, its cross-check and the error-controlled rule on one model's inputs."""
    target, conf = predict(model, x)
    progress(f"ig: sweep over every rule on {len(x)} inputs")
    with timer() as t:
        sw = sweep(model, x, target, s["steps"])
    sw["steps"] = s["steps"]
    sw["seconds"] = t["s"]
    progress("ig: cross-check against IntegratedGradients, then steps='auto'")
    sw["api_cross_check_max_diff"] = cross_check(model, x, target, s["steps"][1], sw)
    sw["auto"], attr = error_controlled(model, x, target, s["tol"], s["max_steps"])
    sw["target"], sw["confidence"] = target.numpy(), conf.numpy()
    return sw, attr, target


# ---- the axioms, on random ReLU networks in float64 -------------------------------------------

def random_mlp(seed: int, d: int = 12, h: int = 24) -> nn.Sequential:
    """``d -> h -> h -> 1`` ReLU network with seeded Gaussian weights, float64, eval mode."""
    g = torch.Generator().manual_seed(seed)
    layers = [nn.Linear(d, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, 1)]
    with torch.no_grad():
        for m in layers[::2]:
            m.weight.copy_(torch.randn(m.weight.shape, generator=g) / m.in_features ** 0.5)
            m.bias.copy_(0.5 * torch.randn(m.bias.shape, generator=g))
    return nn.Sequential(*layers).double().eval()


class Combination(nn.Module):
    """``a F1 + b F2``: the linearity axiom's model."""

    def __init__(self, f1: nn.Module, f2: nn.Module, a: float, b: float):
        super().__init__()
        self.f1, self.f2, self.a, self.b = f1, f2, a, b

    def forward(self, x: Tensor) -> Tensor:
        return self.a * self.f1(x) + self.b * self.f2(x)


def linears(net: nn.Sequential) -> list[nn.Linear]:
    """The linear layers of a ``random_mlp``, first to last."""
    return [m for m in net if isinstance(m, nn.Linear)]


def same_function(net: nn.Sequential, seed: int) -> nn.Sequential:
    """Another implementation of ``net``: first hidden layer permuted and scaled by positive
    factors (``relu(c z) / c = relu(z)``), undone in the next layer's weights."""
    g = torch.Generator().manual_seed(seed + 1000)
    other = random_mlp(seed)
    first, second, last = linears(other)
    net_first, net_second, net_last = linears(net)
    perm = torch.randperm(first.out_features, generator=g)
    c = torch.rand(first.out_features, generator=g, dtype=torch.float64) * 3 + 0.25
    with torch.no_grad():
        first.weight.copy_(net_first.weight[perm] * c[:, None])
        first.bias.copy_(net_first.bias[perm] * c)
        second.weight.copy_(net_second.weight[:, perm] / c)
        second.bias.copy_(net_second.bias)
        last.load_state_dict(net_last.state_dict())
    return other


def axioms(s: dict) -> dict[str, float]:
    """The worst violation of each axiom over ``axiom_nets`` random networks and
    ``axiom_inputs`` random (input, baseline) pairs each; all relative to the largest
    attribution or to ``|F(x) - F(x')|``. IG uses the error-controlled rule at ``axiom_tol``:
    a ReLU network's path gradient jumps at every kink, so a fixed rule leaves an O(1/steps)
    gap (Gauss-Legendre 256 steps: up to 48 % of a small ``F(x) - F(x')``). Cost: a few hundred
    gradient evaluations per input and network (tiny networks: about a second in all)."""
    n = s["axiom_inputs"]
    axioms = ("completeness", "sensitivity", "implementation_invariance", "linearity",
              "symmetry", "dummy")
    worst: dict[str, float] = dict.fromkeys(axioms, 0.0)

    def ig(model: nn.Module, x: Tensor, base: Tensor,
           steps: int | Literal["auto"] = "auto") -> tuple[Tensor, Tensor, Tensor]:
        r = IntegratedGradients(model).attribute(x, baselines=base, steps=steps,
                                                 tol=s["axiom_tol"], max_steps=s["axiom_max_steps"])
        assert r.delta is not None
        return r.tensor, r.delta, r.info["output_delta"]

    for seed in range(s["axiom_nets"]):
        g = torch.Generator().manual_seed(seed)
        net = random_mlp(seed)
        d = linears(net)[0].in_features
        x = torch.randn(n, d, generator=g, dtype=torch.float64)
        base = torch.randn(n, d, generator=g, dtype=torch.float64)
        attr, delta, out = ig(net, x, base)
        scale = attr.abs().amax(1)
        worst["completeness"] = max(worst["completeness"], float((delta.abs() / out.abs()).max()))
        # sensitivity(a): differ from the baseline in feature 0 only -> it gets all of F(x)-F(x')
        only = base.clone()
        only[:, 0] = x[:, 0]
        a1, _, out1 = ig(net, only, base)
        moved = out1.abs() > 1e-6
        sens = (a1[moved, 0] - out1[moved]).abs() / out1[moved].abs()
        worst["sensitivity"] = max(worst["sensitivity"], float(sens.max()) if len(sens) else 0.0)
        a2, _, _ = ig(same_function(net, seed), x, base)
        worst["implementation_invariance"] = max(
            worst["implementation_invariance"], float(((a2 - attr).abs().amax(1) / scale).max()))
        other = random_mlp(seed + 100)
        # linearity holds exactly for a fixed rule; adaptive nodes would differ between models
        a0, _, _ = ig(net, x, base, 64)
        a3, _, _ = ig(other, x, base, 64)
        a4, _, _ = ig(Combination(net, other, 2.0, -3.0), x, base, 64)
        lin = (a4 - (2 * a0 - 3 * a3)).abs().amax(1) / a4.abs().amax(1)
        worst["linearity"] = max(worst["linearity"], float(lin.max()))
        # symmetry: features 1 and 2 enter identically; equal values at x and x' -> equal IG
        sym = random_mlp(seed)
        with torch.no_grad():
            w = linears(sym)[0].weight
            w[:, 2] = w[:, 1]
            w[:, 3] = 0.0  # dummy: feature 3 is never read
        xs, bs = x.clone(), base.clone()
        xs[:, 2], bs[:, 2] = xs[:, 1], bs[:, 1]
        a5, _, _ = ig(sym, xs, bs)
        s5 = a5.abs().amax(1)
        worst["symmetry"] = max(worst["symmetry"], float(((a5[:, 1] - a5[:, 2]).abs() / s5).max()))
        worst["dummy"] = max(worst["dummy"], float((a5[:, 3].abs() / s5).max()))
    return worst


# ---- report -----------------------------------------------------------------------------------

def monotone(gap_row: np.ndarray) -> bool:
    """Whether ``|gap|`` never grows as the steps grow."""
    a = np.abs(gap_row)
    return bool(np.all(np.diff(a) <= 1e-12 + 1e-9 * a[:-1]))


def summary_rows(res: dict) -> list[list[object]]:
    """One row per rule: median (max) relative gap at each step count; then the auto row."""
    rows = []
    for r in RULES:
        g = np.abs(res["gaps"][r])
        rows.append([r] + [f"{fmt(float(np.median(c)))} ({fmt(float(c.max()))})" for c in g.T])
    au = res["auto"]
    rows.append([f"auto (tol {fmt(res['tol'])}): {fmt(float(np.mean(au['evaluations'])), 3)} "
                 f"evals avg ({int(np.min(au['evaluations']))}-{int(np.max(au['evaluations']))}),"
                 f" {int(np.sum(au['converged']))}/{len(au['converged'])} converged",
                 f"{fmt(float(np.median(au['relative_gap'])))} "
                 f"({fmt(float(np.max(au['relative_gap'])))})"] + [""] * (len(res["steps"]) - 1))
    return rows


def findings(name: str, res: dict) -> dict[str, object]:
    """Claims checked on one model's sweep."""
    gl = np.abs(res["gaps"]["gausslegendre"])
    non_mono = {r: int(sum(not monotone(row) for row in res["gaps"][r])) for r in RULES}
    within = [n for n, c in zip(res["steps"], gl.T) if c.max() <= res["tol"]]
    return {
        "model": name,
        "gl_median_decreases": bool(np.all(np.diff(np.median(gl, 0).astype(float)) <= 0)),
        "gl_error_first_last": [float(np.median(gl[:, 0])), float(np.median(gl[:, -1]))],
        "inputs_with_non_monotone_error": non_mono,
        "gl_steps_for_all_within_tol": within[0] if within else None,
        "auto_mean_evaluations": float(np.mean(res["auto"]["evaluations"])),
        "auto_all_converged": bool(np.all(res["auto"]["converged"])),
        "auto_max_gap": float(np.max(res["auto"]["relative_gap"])),
    }


def completeness_figure(results: dict[str, dict]) -> Figure:
    """Relative completeness gap against gradient evaluations: one panel per model, median per
    rule with a min-max band, and the error-controlled rule's inputs as points."""
    fig = Figure(figsize=(5.5 * len(results), 4.2))
    for i, (name, res) in enumerate(results.items()):
        ax = fig.add_subplot(1, len(results), i + 1)
        for r in RULES:
            g = np.abs(res["gaps"][r]).clip(1e-9)
            n = [rule_steps(r, k) for k in res["steps"]]
            line, = ax.plot(n, np.median(g, 0), marker="o", ms=3, label=r)
            ax.fill_between(n, g.min(0), g.max(0), color=line.get_color(), alpha=0.12)
        au = res["auto"]
        ax.scatter(au["evaluations"], np.clip(au["relative_gap"], 1e-9, None), marker="*", s=60,
                   color="k", zorder=5, label=f"auto (tol {res['tol']})")
        ax.axhline(res["tol"], color="k", lw=0.6, ls=":")
        ax.set(xscale="log", yscale="log", xlabel="gradient evaluations per input",
               ylabel="|delta| / |F(x) - F(x')|", title=f"{name} ({len(au['converged'])} inputs)")
        ax.xaxis.set_major_locator(LogLocator(base=2))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.12, top=0.92, wspace=0.25)
    return fig


def slopes_figure(res: dict, labels: list[str]) -> Figure:
    """``dF/da`` along each path, scaled by ``F(x) - F(x')``: kinks are where fixed rules lose."""
    fig = Figure(figsize=(7, 3.6))
    ax = fig.add_subplot(1, 1, 1)
    for row, d, lab in zip(res["slopes"], res["output_delta"], labels):
        ax.plot(res["alphas"], row / d, lw=0.8, label=lab)
    ax.set(xlabel="alpha", ylabel="(dF/da) / (F(x) - F(x'))",
           title="the integrand of IG's completeness along the path")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def heatmap_figure(x: Tensor, attr: Tensor, labels: list[str]) -> Figure:
    """Each photo next to its IG map (error-controlled rule, signed, 99th-percentile clip)."""
    from ..zoo import unpreprocess

    fig = Figure(figsize=(4.6, 2.4 * len(x)))
    for i in range(len(x)):
        img = unpreprocess(x[i]).permute(1, 2, 0).numpy()
        for j, pix in enumerate((img, overlay(img, attr[i]))):
            ax = fig.add_subplot(len(x), 2, 2 * i + j + 1)
            ax.imshow(pix)
            ax.set_axis_off()
            ax.set_title(labels[i] if j == 0 else "IG (auto), red +, blue -", fontsize=8)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.95, hspace=0.25, wspace=0.03)
    return fig


def run(out_dir: Path, quick: bool = False) -> dict:
    """Run the IG reproduction and write ``out_dir``; returns the ``results.json`` document.

    Cost (full): about 2,400 EfficientNet-Lite0 gradient evaluations (4 photos x (509 sweep
    nodes + 40 cross-check + the adaptive count)) -- about 10 min unloaded on two cores -- and
    seconds for the digits CNN and the axioms, then the chemistry and translation applications
    (``other_applications``, about 40 s). ``quick``: digits and axioms only, a few seconds.
    """
    s = QUICK if quick else FULL
    torch.manual_seed(0)
    results, figures, labels = {}, {}, {}
    with timer() as total:
        model, x, _ = digits_examples(s["digits"])
        results["digits CNN"], _, _ = study(model, x, s)
        labels["digits CNN"] = [f"digit #{i}" for i in range(len(x))]
        if s["photos"]:
            from ..zoo import class_name, efficientnet_lite0, photo_batch

            net, xp = efficientnet_lite0(), photo_batch(s["photos"])
            res, attr, target = study(net, xp, s)
            results["EfficientNet-Lite0"] = res
            labels["EfficientNet-Lite0"] = [f"{p}: {class_name(int(t))}"
                                            for p, t in zip(s["photos"], target)]
            k = s["heatmaps"]
            figures["heatmaps"] = heatmap_figure(xp[:k], attr[:k],
                                                 labels["EfficientNet-Lite0"][:k])
            figures["path_slopes"] = slopes_figure(res, labels["EfficientNet-Lite0"])
        for res in results.values():
            res["tol"] = s["tol"]
        figures["completeness"] = completeness_figure(results)
        with timer() as ta:
            worst = axioms(s)
        applications = {} if quick else other_applications(Path(out_dir))
    checks = [findings(name, res) for name, res in results.items()]
    numbers = {"models": results, "labels": labels, "axioms_max_violation": worst,
               "axioms_seconds": ta["s"], "findings": checks, "applications": applications}
    report = _report(s, results, worst, checks, total["s"]) + _applications(applications)
    return write_results(out_dir, "ig", s, numbers, report, figures, total["s"])


#: The paper's chemistry and translation applications: each its own reproduction, run into a
#: subfolder when its models are installed (the graph extra; cn2en).
APPLICATIONS = {"molecules": "torch_geometric", "translation": "cn2en"}


def other_applications(out_dir: Path, quick: bool = False) -> dict:
    """Run each installed application's reproduction into ``out_dir/NAME``; returns
    ``{name: its numbers, or {"skipped": why}}``. Cost: about 40 s on two cores."""
    import importlib
    import importlib.util

    out = {}
    for name, needs in APPLICATIONS.items():
        if importlib.util.find_spec(needs) is None:
            out[name] = {"skipped": f"{needs} is not installed"}
            continue
        doc = importlib.import_module(f"pathattr.experiments.{name}").run(out_dir / name,
                                                                           quick=quick)
        out[name] = doc["numbers"]
    return out


def _applications(apps: dict) -> str:
    if not apps:
        return ""
    parts = ["\n\n## The paper's other applications"]
    mol, tr = apps.get("molecules", {}), apps.get("translation", {})
    if "faithfulness" in mol:
        ig = mol["faithfulness"]["ig"]
        parts.append(
            f"- **Molecules** (`molecules/`): IG's atom scores of a GINE net trained on Crippen "
            f"logP correlate with Crippen's own per-atom contributions at r = {fmt(ig['r'])} "
            f"[{fmt(ig['r_low'])}, {fmt(ig['r_high'])}] per molecule ({ig['molecules']} "
            f"held-out molecules; shuffled atoms {fmt(ig['control_r'])}).")
    if "alignment" in tr:
        ig = tr["alignment"]["ig"]
        parts.append(
            f"- **Translation** (`translation/`): on cn2en, IG's top source character is a "
            f"written-down translation of the English word for {fmt(ig['accuracy'])} "
            f"[{fmt(ig['low'])}, {fmt(ig['high'])}] of {tr['pairs']} pairs (chance "
            f"{fmt(tr['chance'])}).")
    parts += [f"- {name}: skipped ({v['skipped']})" for name, v in apps.items()
              if "skipped" in v]
    return "\n".join(parts)


def _report(s: dict, results: dict, worst: dict, checks: list[dict], seconds: float) -> str:
    head = ["rule"] + [f"{n} steps" for n in s["steps"]]
    parts = [
        "# IG reproduction (Sundararajan et al. 2017)",
        f"Completeness gap `|sum IG - (F(x) - F(x'))| / |F(x) - F(x')|`, zero baseline, target "
        f"= the predicted class's logit; cells are median (max) over inputs. The trapezoid rule "
        f"uses steps + 1 nodes. Error-controlled rule: `steps='auto'`, tol {s['tol']}, "
        f"max_steps {s['max_steps']}. Total time {seconds:.0f} s.",
    ]
    for name, res in results.items():
        parts += [f"## {name} ({len(res['target'])} inputs; sweep {res['seconds']:.0f} s, "
                  f"auto {res['auto']['seconds']:.0f} s)", table(head, summary_rows(res)),
                  f"Sweep vs `IntegratedGradients` at {s['steps'][1]} steps, every rule: max "
                  f"difference of the relative gap {fmt(res['api_cross_check_max_diff'])}."]
    parts += ["## Axioms on random ReLU networks (float64)",
              f"{s['axiom_nets']} networks x {s['axiom_inputs']} random (input, baseline) pairs, "
              f"IG with steps='auto', tol {s['axiom_tol']} (linearity: Gauss-Legendre 64 steps, "
              f"the same nodes for every model); worst violation, relative to the "
              f"largest attribution (completeness, sensitivity: to |F(x) - F(x')|).",
              table(["axiom", "max violation"], [[k, v] for k, v in worst.items()]),
              "## Findings"]
    for c in checks:
        gl0, gl1 = c["gl_error_first_last"]
        enough = c["gl_steps_for_all_within_tol"] or f"> {s['steps'][-1]}"
        parts.append(
            f"- **{c['model']}**: Gauss-Legendre median gap {fmt(gl0)} at {s['steps'][0]} steps "
            f"-> {fmt(gl1)} at {s['steps'][-1]} (median decreasing at every step: "
            f"{'yes' if c['gl_median_decreases'] else 'no'}); inputs whose gap is not monotone "
            f"in steps, per rule: {c['inputs_with_non_monotone_error']}; fewest GL steps with "
            f"every input within tol: {enough}"
            f"; the error-controlled rule used {fmt(c['auto_mean_evaluations'])} evaluations on "
            f"average, max gap {fmt(c['auto_max_gap'])}, all converged: "
            f"{'yes' if c['auto_all_converged'] else 'no'}.")
    return "\n\n".join(parts)
