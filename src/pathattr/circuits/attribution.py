"""``attribute`` and ``patch``: a metric's change between a clean and a corrupted run, given to
the model's components.

On the input path (the embeddings, corrupted to clean; ``y(a)`` a component's activation at
path point ``a``, ``m`` the metric):

- ``conductance``: ``sum_k dm/dy(a_k) . (y(t_k) - y(t_{k-1}))``, the total conductance
  (Neuron IG): exact as the steps grow, and over a cut the scores sum to ``m(clean) -
  m(corrupted)``;
- ``eap-ig``: ``(sum_k w_k dm/dy(a_k)) . (y(1) - y(0))`` (Hanna et al. 2024);
- ``atp``: ``dm/dy(1) . (y(1) - y(0))``, one gradient at the clean run;
- ``clean-corrupted``: the mean of the gradients at both ends times ``y(1) - y(0)``.

``deeplift`` / ``revealcancel``: DeepLIFT's multipliers times ``y(1) - y(0)``, with the
corrupted run as the reference; no path: one forward pair and one backward per site, and
over a cut the scores sum to the change exactly (summation-to-delta).

``ig-activations`` runs a path per component instead: its own activation interpolated from its
corrupted to its clean value, everything else computed as in the clean run; its scores sum,
per component, to ``m(clean) - m(clean with that component corrupted)``, i.e. minus the
noising patch (``info["gaps"]`` is the quadrature error of each).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn

from ..call import embedding_path
from ..engine import guarded
from ..forward import OutputSpec
from ..integrate import (
    DEFAULT_STEPS,
    Integral,
    Integrator,
    Nodes,
    Path,
    Points,
    integrate,
    tap_key,
    tapped_ends,
)
from ..layers import Tap, resolve_layer
from ..methods.conductance import ConductanceIntegral
from ..methods.deeplift.method import layer_pass
from ..quadrature import nodes_weights
from ..targets import TargetSpec
from ..validate import check_number, check_positive_int
from .runs import Runs, cut_check, patched, prepare
from .sites import Site, find, path_layer, unwrap

METHODS = ("conductance", "eap-ig", "atp", "clean-corrupted", "ig-activations", "deeplift",
           "revealcancel")
#: the nodes each input-path estimator fixes (the others take ``steps`` and ``rule``)
_FIXED: dict[str, Nodes] = {"atp": ("riemann_right", 1),
                            "clean-corrupted": ("riemann_trapezoid", 2)}


@dataclass
class CircuitResult:
    """Scores of components for a metric's change between two runs.

    names: one per component (a head's name ends with its layer and head index,
    ``blocks.1.attn.head.4``; an MLP's contains ``mlp`` and its layer); scores: ``(B, n)``;
    delta: ``(B,)`` ``scores.sum(1) - (m(clean) - m(corrupted))`` when the components form a
    cut, else None (``info["cut"]`` says why); change: ``m(clean) - m(corrupted)`` ``(B,)``;
    alphas, weights: the path points used (None for patching); info: the method, the path,
    evaluations."""

    names: list[str]
    scores: Tensor
    delta: Tensor | None
    change: Tensor
    method: str
    alphas: Tensor | None = None
    weights: Tensor | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def top(self, k: int = 10, example: int = 0) -> list[tuple[str, float]]:
        """The ``k`` components with the largest ``|score|`` for one example."""
        row = self.scores[example]
        order = row.abs().argsort(descending=True)[:k].tolist()
        return [(self.names[i], float(row[i])) for i in order]


def attribute(model: Any, clean: Tensor, corrupted: Tensor, metric: TargetSpec, *,
              components: str | Sequence[str] = "heads", method: str = "conductance",
              steps: int | Literal["auto"] = 32, rule: str = "gausslegendre",
              tol: float = 1e-3, max_steps: int = 512,
              forward_kwargs: Mapping[str, Any] | None = None, output: OutputSpec = None,
              batch_size: int | Literal["auto"] = "auto") -> CircuitResult:
    """Attribute ``metric``'s change from the corrupted to the clean run to ``components``.

    ``clean``, ``corrupted``: token ids ``(B, T)`` of one shape (or embeddings); ``metric``:
    a callable ``metric(output, examples) -> (rows,)`` (``logit_diff``, ``prob_diff``) or
    anything ``target=`` takes; ``components``: ``"heads"``, ``"mlps"``, ``"neurons"`` or
    layer names; ``method``: one of ``METHODS`` (module docstring). ``steps="auto"``:
    conductance over a cut doubles its steps from 16 until ``|delta| <= tol |change|`` for
    every example or ``max_steps`` (``info["converged"]``); elsewhere there is no check, and
    it means ``DEFAULT_STEPS``. Returns a ``CircuitResult``. Cost: the input-path methods,
    ``steps`` forwards and backwards (down to the components) per example plus four forwards
    (``conductance`` with Gauss-Legendre nodes: ``steps - 1`` more, stopped after the last
    component), and three for the cut check; ``ig-activations``, ``steps`` forwards and
    backwards per example and component, plus the noising patch for its gaps."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    check_number(tol, "tol", 0, low_open=True)
    check_positive_int(max_steps, "max_steps", minimum=16)
    net = unwrap(model)
    sites = find(net, components)
    with guarded(net):
        runs = prepare(net, clean, corrupted, metric, sites, forward_kwargs, output)
        if method == "ig-activations":
            return _on_activations(runs, DEFAULT_STEPS if steps == "auto" else steps, rule,
                                   batch_size)
        reason = cut_check(runs)
        if method in ("deeplift", "revealcancel"):
            scores = _deeplift(runs, net, "rescale" if method == "deeplift" else method,
                               batch_size)
            return CircuitResult(
                [n for site in sites for n in site.names], scores,
                None if reason else scores.sum(1) - runs.change, runs.change, method,
                info={"path": "none: the corrupted run is DeepLIFT's reference",
                      "cut": reason or "the components form a cut"})
        refine = steps == "auto" and method == "conductance" and reason is None
        n = 16 if refine else DEFAULT_STEPS if steps == "auto" else steps
        while True:
            nodes = _FIXED.get(method, (rule, n))
            scores, path = _on_input_path(runs, net, method, nodes, batch_size)
            delta = None if reason else scores.sum(1) - runs.change
            converged = None if delta is None else \
                delta.abs() <= tol * runs.change.abs()
            if not refine or converged is None or bool(converged.all()) or n >= max_steps:
                break
            n = min(2 * n, max_steps)
    info = {"path": "the input embeddings, corrupted to clean", "rule": nodes[0],
            "steps": nodes[1], "cut": reason or "the components form a cut",
            "gradient_evaluations": path.evaluations(nodes[1])}
    if refine:
        info.update(tol=tol, converged=converged)
    return CircuitResult([n for site in sites for n in site.names], scores, delta, runs.change,
                         method, path.alphas, path.weights, info)


def _on_input_path(runs: Runs, net: nn.Module, method: str, nodes: Nodes,
                   batch_size: int | str) -> tuple[Tensor, Path]:
    """Each component's score ``(B, n)`` on the path from the corrupted to the clean
    embeddings (token ids) or inputs, and that path. Cost: see ``attribute``."""
    nodes_weights(*nodes)  # a bad rule or count raises in the rule's words
    engine = runs.s.engine(batch_size)
    embedding_path(engine, path_layer(net) if not runs.s.x.is_floating_point() else None)
    integrators: list[Integrator] = [
        ConductanceIntegral(site.layer, site.use_input, True, nodes)
        if method == "conductance" else MeanGradient(site, nodes) for site in runs.sites]
    f1, f0, ends = tapped_ends(engine, integrators, net)
    path = Path.of(runs.s, engine, f0, f1, nodes, layer_ends=ends)
    integrals = integrate(path, integrators)
    return torch.cat([site.scores(i.attributions[0])
                      for site, i in zip(runs.sites, integrals)], 1), path


def patch(model: Any, clean: Tensor, corrupted: Tensor, metric: TargetSpec, *,
          components: str | Sequence[str] = "heads",
          direction: Literal["noising", "denoising"] = "noising",
          forward_kwargs: Mapping[str, Any] | None = None, output: OutputSpec = None,
          batch_size: int = 64) -> CircuitResult:
    """Activation patching, batched: ``scores[b, i] = m(run with component i patched) -
    m(the unpatched run)``; ``"noising"`` gives i its corrupted activation in the clean run,
    ``"denoising"`` its clean activation in the corrupted run. Returns a ``CircuitResult``
    (``delta`` None: patching has no completeness). Cost: one forward per example and
    component, ``batch_size`` rows at a time, plus two."""
    if direction not in ("noising", "denoising"):
        raise ValueError(f"direction must be 'noising' or 'denoising', got {direction!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    net = unwrap(model)
    sites = find(net, components)
    with guarded(net):
        runs = prepare(net, clean, corrupted, metric, sites, forward_kwargs, output)
        if direction == "noising":
            m = patched(runs, "clean", runs.corrupted, batch_size) - runs.m_clean[:, None]
        else:
            m = patched(runs, "corrupted", runs.clean, batch_size) - runs.m_corrupted[:, None]
    return CircuitResult([n for site in sites for n in site.names], m, None, runs.change,
                         f"patch ({direction})", info={"direction": direction})


class MeanGradient(Integrator):
    """``(sum_k w_k dm/dy(a_k)) * (y(1) - y(0))`` of one site on the pass it rides: the
    first-order estimators (EAP-IG, AtP, clean-corrupted) differ only in their nodes.
    Memory: one activation-sized sum per example."""

    def __init__(self, site: Site, nodes: Nodes):
        self.tap, self.nodes = Tap(site.layer, site.use_input), nodes
        self.key = tap_key(self.tap)
        self.acc: Tensor | None = None

    def taps(self, model: Any) -> list[Tap]:
        return [self.tap]

    def add(self, points: Points) -> None:
        g = points.layers[self.key]
        assert points.weights is not None  # a riding pass has its weights
        w = points.weights.to(g.dtype).reshape(-1, *[1] * (g.dim() - 1))
        if self.acc is None:
            self.acc = g.new_zeros((points.path.rows, *g.shape[1:]))
        self.acc.index_add_(0, points.rows, g * w)

    def finish(self, path: Path) -> Integral:
        assert self.acc is not None  # the pass had points
        _, y0, y1 = path.layer_ends[self.key]
        a = self.acc * (y1 - y0).to(self.acc.dtype)
        out = path.f1 - path.f0
        return Integral([path.s.mean(a)], path.s.mean(a.flatten(1).sum(1) - out.reshape(-1)),
                        path.alphas, path.weights, layer=True)


def _deeplift(runs: Runs, net: nn.Module, nonlinearity: str, batch_size: int | str
              ) -> Tensor:
    """DeepLIFT contributions ``(B, n)`` of every site, one site at a time: ``layer_pass``
    holds the layers it taps as inputs, so tapping all at once would give each only its
    paths that avoid the others."""
    scores = []
    for site in runs.sites:
        diffs, mults, *_ = layer_pass(runs.s, [resolve_layer(net, site.layer)], nonlinearity,
                                      False, batch_size, site.use_input)
        scores.append(site.scores(mults[0] * diffs[0]))
    return torch.cat(scores, 1)


def _on_activations(runs: Runs, steps: int, rule: str, batch_size: int | str
                    ) -> CircuitResult:
    """IG of each component along its own activation path (module docstring)."""
    alphas, weights = (torch.as_tensor(v) for v in nodes_weights(rule, steps))
    rows_per_forward = 64 if batch_size == "auto" else int(batch_size)
    b, dev = runs.s.b, runs.s.x.device
    sizes = [site.size for site in runs.sites]
    n, m = sum(sizes), len(alphas)
    site_of = torch.repeat_interleave(torch.arange(len(sizes)), torch.as_tensor(sizes))
    index = torch.cat([torch.arange(k) for k in sizes])
    # row (example e, component j, node k) at e * n * m + j * m + k
    ex = torch.arange(b).repeat_interleave(n * m).to(dev)
    comp = index.repeat_interleave(m).repeat(b).to(dev)
    site = site_of.repeat_interleave(m).repeat(b).to(dev)
    a = alphas.repeat(b * n).to(dev)
    w = weights.repeat(b * n).to(dev)
    scores = []
    for start in range(0, len(ex), rows_per_forward):
        sl = slice(start, start + rows_per_forward)
        e, c, si, al = ex[sl], comp[sl], site[sl], a[sl]

        leaves: dict[int, Tensor] = {}

        def replace(i: int, act: Tensor, rows: Tensor, c=c, si=si, al=al,
                    leaves=leaves) -> Tensor:
            moved = runs.sites[i].mix(act, runs.corrupted[i][rows].to(act.dtype),
                                      torch.where(si == i, c, -1), 1 - al)
            # dm/dy through everything downstream, later components included: a zero added
            # to the activation, not a detached copy of it
            leaves[i] = torch.zeros_like(moved, requires_grad=True)
            return moved + leaves[i]

        out, _ = runs.metric("clean", e, replace, grad=True)
        grads = torch.autograd.grad(out.sum(), [leaves[i] for i in range(len(runs.sites))],
                                    allow_unused=True)
        row = torch.zeros(len(e), dtype=out.dtype, device=dev)
        for i, (st, g) in enumerate(zip(runs.sites, grads)):
            if g is None:  # the metric does not read this site (nothing runs after it)
                continue
            diff = (runs.clean[i][e] - runs.corrupted[i][e]).to(g.dtype)
            per = st.scores(g * diff).gather(1, c.clamp(max=st.size - 1)[:, None])[:, 0]
            row = torch.where(si == i, per.to(row.dtype), row)
        scores.append(row.detach() * w[sl].to(row.dtype))
    total = torch.cat(scores).reshape(b, n, m).sum(2)
    noised = patched(runs, "clean", runs.corrupted, rows_per_forward)
    gaps = total - (runs.m_clean[:, None] - noised)
    return CircuitResult([nm for st in runs.sites for nm in st.names], total, None,
                         runs.change, "ig-activations", alphas, weights,
                         {"path": "each component's activation, corrupted to clean, the rest "
                                  "as in the clean run", "rule": rule, "steps": steps,
                          "gaps": gaps, "cut": "not applicable: one path per component"})


def components(model: Any, kind: str | Sequence[str] = "heads") -> list[str]:
    """The names ``attribute`` and ``patch`` give the components of ``kind``, in order."""
    return [n for site in find(unwrap(model), kind) for n in site.names]


__all__ = ["METHODS", "CircuitResult", "attribute", "components", "patch"]
