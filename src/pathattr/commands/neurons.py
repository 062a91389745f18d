"""A layer's most important channels by Neuron IG (total conductance, Shrikumar et al. 2018)
and DeepLIFT, and what resetting each one to its baseline activation does to the target."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .. import viz
from ..errors import one_line


@dataclass
class TopNeurons:
    """summary: for summary.json; table and png: for the report and the terminal; notes: one
    sentence each; failures: a score that could not be computed (the rest still is)."""

    summary: dict
    table: viz.Table
    png: bytes
    notes: list[str]
    failures: list[str]


def top_neurons(model: nn.Module, x: Tensor, target: int, layer: str, top: int,
                steps: int) -> TopNeurons:
    """The ``top`` channels of ``layer`` by |Neuron IG| for ``x`` (one example) and ``target``,
    each with its DeepLIFT score and its reset effect ``F(x) - F(x with the channel at its
    baseline activation)``. Cost: ``steps`` forward+backward passes (backward to the layer
    only), one DeepLIFT pass, and ``2 * top + 4`` forward passes for the resets."""
    from ..methods.conductance import LayerConductance
    from ..metrics import neuron_ablation

    nig = LayerConductance(model, layer).attribute(x, target=target, steps=steps)
    scores = {"Neuron IG": nig.neuron_totals()[0]}
    failures = []
    try:
        from ..methods.deeplift import LayerDeepLift

        scores["DeepLIFT"] = LayerDeepLift(model, layer).attribute(
            x, target=target).neuron_totals()[0]
    except Exception as e:  # Neuron IG alone is still worth showing
        failures.append(f"DeepLIFT on {layer}: {one_line(e)}")
    n = scores["Neuron IG"].numel()
    k = min(top, n)
    order = scores["Neuron IG"].abs().argsort(descending=True, stable=True)[:k]
    # Each channel reset alone: k copies of x, copy i ranking only channel order[i] first.
    one_hot = torch.zeros(k, n, dtype=x.dtype)
    one_hot[torch.arange(k), order] = 1
    alone = neuron_ablation(model, x.expand(k, *x.shape[1:]), layer, one_hot, target,
                            ks=[1]).scores[:, 0]
    # Together: the k channels each score ranks highest (signed: the most supporting), so the
    # resets add up instead of cancelling, as in the neuron-ablation metric.
    together = {name: float(neuron_ablation(model, x, layer, s[None].to(x.dtype), target,
                                            ks=[k]).scores[0, 0])
                for name, s in scores.items()}

    columns = {name: s[order].tolist() for name, s in scores.items()}
    columns["reset effect"] = alone.tolist()
    rows = [(r + 1, int(c), *(f"{columns[h][r]:+.3g}" for h in columns))
            for r, c in enumerate(order.tolist())]
    table = viz.Table(("rank", "channel", *columns), rows)
    fig = viz.neuron_bars(order.tolist(), columns, title=f"top {k} of {n} channels of {layer}")
    total, out_delta = float(scores["Neuron IG"].sum()), float(nig.info["output_delta"][0])
    notes = [
        f"Neuron IG sums to {total:+.4g} over all {n} channels of {layer}; "
        f"F(x) - F(baseline) = {out_delta:+.4g} (they agree when the layer separates input "
        f"from output, up to quadrature error).",
        "Reset effect: the target logit minus the logit with that channel set to its "
        "activation at the baseline; positive means the channel supported the target.",
        *(f"Resetting together the {k} channels with the highest {name} (most supporting) "
          f"changes the target logit by {-v:+.4g}." for name, v in together.items()),
    ]
    summary = {
        "layer": layer, "channels": n, "neuron_ig_total": total, "output_delta": out_delta,
        "top": [{"channel": int(c), **{h: columns[h][r] for h in columns}}
                for r, c in enumerate(order.tolist())],
        "reset_top_together": together, "errors": failures,
    }
    return TopNeurons(summary, table, viz.figure_png(fig), notes, failures)
