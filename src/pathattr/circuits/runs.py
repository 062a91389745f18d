"""The clean and corrupted runs of a circuit question, and forwards with components replaced:
what activation patching, the cut check and IG on activations are made of."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..call import Setup, setup
from ..forward import OutputSpec
from ..layers import Tap, tap_layers
from ..targets import TargetSpec
from .sites import Site

#: ``replace(site index, activation (rows, *S), rows' examples) -> new activation``
Replace = Callable[[int, Tensor, Tensor], Tensor]


@dataclass
class Runs:
    """The two runs of ``B`` examples: ``s.x`` the clean inputs, ``s.baseline`` the corrupted
    ones (rows ``b``); the metric at both; each site's activation in both."""

    model: nn.Module
    s: Setup
    sites: list[Site]
    m_clean: Tensor
    m_corrupted: Tensor
    clean: list[Tensor]
    corrupted: list[Tensor]

    @property
    def change(self) -> Tensor:
        """``m(clean) - m(corrupted)`` per example ``(B,)``."""
        return self.m_clean - self.m_corrupted

    def metric(self, base: str, examples: Tensor, replace: Replace | None = None,
               grad: bool = False) -> tuple[Tensor, list[Tensor]]:
        """The metric per row of a forward of the ``base`` run (``"clean"`` or
        ``"corrupted"``) of ``examples``, each site's activation passed through ``replace``
        first; and the sites' activations as the forward went on with them (with ``grad``,
        differentiable: ``replace`` may return leaves). Cost: one forward of
        ``len(examples)`` rows."""
        inputs = (self.s.x if base == "clean" else self.s.baseline)[examples]
        def swap(i: int) -> Callable[[Tensor], Tensor] | None:
            fn = replace
            return None if fn is None else (lambda a: fn(i, a, examples))

        taps = [Tap(site.layer, site.use_input, swap(i)) for i, site in enumerate(self.sites)]
        with torch.set_grad_enabled(grad), tap_layers(self.model, taps, copy=not grad) as read:
            out = self.s.call(inputs, examples)
            m = self.s.target.select(out, examples)
            return m, [r.check() for r in read]


def prepare(model: nn.Module, clean: Tensor, corrupted: Tensor, metric: TargetSpec,
            sites: list[Site], forward_kwargs: Mapping[str, Any] | None,
            output: OutputSpec) -> Runs:
    """Check the two inputs and the metric, and run both: ``Runs``. Raises ``ValueError``
    naming ``corrupted`` (another shape) or ``metric`` (not one value per example).
    Cost: two forwards of ``B`` rows."""
    for name, t in (("clean", clean), ("corrupted", corrupted)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a tensor of token ids (or embeddings), got "
                            f"{type(t).__name__}")
    if clean.shape != corrupted.shape:
        raise ValueError(f"corrupted must have clean's shape {tuple(clean.shape)} (the two "
                         f"runs are compared position by position), got "
                         f"{tuple(corrupted.shape)}")
    s = setup(model, clean, corrupted, metric, None, forward_kwargs, output,
              integers=not clean.is_floating_point())
    runs = Runs(model, s, sites, torch.empty(0), torch.empty(0), [], [])
    every = torch.arange(s.b, device=s.x.device)
    try:
        runs.m_clean, runs.clean = runs.metric("clean", every)
        runs.m_corrupted, runs.corrupted = runs.metric("corrupted", every)
    except ValueError as e:
        if str(e).startswith("target"):
            raise ValueError(f"metric: {e}".replace("target callable", "a callable")) from None
        raise
    return runs


def patched(runs: Runs, base: str, source: Sequence[Tensor], rows_per_forward: int
            ) -> Tensor:
    """``(B, n)``: the metric of the ``base`` run with one component at a time given its
    activation from ``source`` (one tensor per site, ``(B, *S)``), in site order. Cost: one
    forward per example and component, ``rows_per_forward`` rows at a time."""
    b, dev = runs.s.b, runs.s.x.device
    sizes = [site.size for site in runs.sites]
    # row (example e, component j of site i): patch j at site i, leave the others
    site_of = torch.repeat_interleave(torch.arange(len(sizes), device=dev),
                                      torch.as_tensor(sizes, device=dev))
    index = torch.cat([torch.arange(n, device=dev) for n in sizes])
    n = len(index)
    examples = torch.arange(b, device=dev).repeat_interleave(n)
    comp = index.repeat(b)
    site = site_of.repeat(b)
    out = []
    for start in range(0, b * n, rows_per_forward):
        sl = slice(start, start + rows_per_forward)
        ex, c, si = examples[sl], comp[sl], site[sl]

        def replace(i: int, a: Tensor, rows: Tensor, c=c, si=si) -> Tensor:
            return runs.sites[i].mix(a, source[i][rows], torch.where(si == i, c, -1))

        out.append(runs.metric(base, ex, replace)[0])
    return torch.cat(out).reshape(b, n)


def together(runs: Runs, base: str, source: Sequence[Tensor]) -> Tensor:
    """``(B,)``: the metric of the ``base`` run with every site given ``source``'s
    activation at once. Cost: one forward of ``B`` rows."""
    every = torch.arange(runs.s.b, device=runs.s.x.device)
    return runs.metric(base, every, lambda i, a, rows: source[i][rows])[0]


def cut_check(runs: Runs, tol: float = 1e-4) -> str | None:
    """None when the components form a cut, so that their scores must sum to the change: no
    component's activation depends on another's (checked exactly, by autograd, in one
    forward), and they separate the input from the metric — the corrupted run given every
    clean activation reaches ``m(clean)``, the clean run given the corrupted ones
    ``m(corrupted)`` (within ``tol`` of the change; a check at the path's two ends). Else the
    reason, in words. Cost: three forwards of ``B`` rows."""
    every = torch.arange(runs.s.b, device=runs.s.x.device)
    reads: list[str] = []

    def mark(i: int, a: Tensor, rows: Tensor) -> Tensor:
        if a.requires_grad:  # computed from an earlier component's marked activation
            reads.append(runs.sites[i].layer)
        return a.detach().requires_grad_()

    runs.metric("clean", every, mark, grad=True)
    if reads:
        return (f"the components are not a cut: {reads[0]} is computed from another of "
                f"them, so a path through both is counted twice")
    scale = runs.change.abs().clamp_min(torch.finfo(runs.change.dtype).tiny)
    up = together(runs, "corrupted", runs.clean)
    down = together(runs, "clean", runs.corrupted)
    miss = torch.maximum((up - runs.m_clean).abs(), (down - runs.m_corrupted).abs()) / scale
    worst = float(miss.max()) if miss.numel() else 0.0
    if worst <= tol:
        return None
    return (f"the components are not a cut: with all of them patched, the metric still moves "
            f"by {worst:.3g} of m(clean) - m(corrupted) (another path carries the input), so "
            f"their scores need not sum to the change")
