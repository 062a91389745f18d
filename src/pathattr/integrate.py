"""The integrator protocol: what a straight-path method does with the points of its path.

Every path method (IG, left-IG, IDG, IDGI, adaptive IG) is one ``Integrator``: it plans its
points (or rides the shared pass on the path's rule), adds each chunk of gradients, and
finishes its result. The same integrator serves the method's own class, ``explain`` (several
integrators on one pass) and ``SequenceAttribution`` (``T`` targets per point), because every
chunk reaches it with a target axis: outputs ``(n, T)`` and path gradients ``(n, T, *S)``,
``T = 1`` for a classifier.

What an integrator accumulates per space ``i`` of the path (the input, or each layer of a
layer path) is ``Path.keep(g)``: the gradient itself, multiplied by ``x - x'`` at the end
(``Path.attribution``), or, for a caller that reads only sums over some dimensions (a sequence's
positions, summed over the embedding), the already reduced ``reduce(g * (x - x'))``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

from .call import Setup, flat_points, rule_tensors
from .engine import Chunk, PathEngine, accumulation_dtype
from .layers import Tap
from .result import Attribution


@dataclass
class Path:
    """One call's straight path, as the integrators see it.

    ``f0``, ``f1``: the target output at both ends, ``(R,)`` or ``(R, T)`` (rows
    ``k * B + b``); ``rule`` and ``steps``: the shared pass's nodes (``alphas``, ``weights``).
    ``reduce``: applied to ``g * (x - x')`` ``(n, T, *S)`` before it is kept (None: keep the
    gradient whole). ``progress``: a bar on stderr counting the backwards.
    """

    s: Setup
    engine: PathEngine
    f0: Tensor
    f1: Tensor
    rule: str | None
    steps: int
    alphas: Tensor
    weights: Tensor
    reduce: Callable[[Tensor], Tensor] | None = None
    progress: bool = False

    @classmethod
    def of(cls, s: Setup, engine: PathEngine, f0: Tensor, f1: Tensor, rule: str | None,
           steps: int, **kw: Any) -> Path:
        """The path with the ``rule``'s ``steps`` nodes, in the dtype of the path's space."""
        alphas, weights = rule_tensors(rule, steps, engine.path_diff) if rule else (
            kw.pop("alphas"), kw.pop("weights"))
        return cls(s, engine, f0, f1, rule, steps, alphas, weights, **kw)

    @property
    def targets(self) -> bool:
        """Whether the output has a target axis of its own (a sequence's ``T`` tokens)."""
        return self.f1.dim() == 2

    @property
    def rows(self) -> int:
        return len(self.f1)

    @property
    def n_targets(self) -> int:
        return self.f1.shape[1] if self.targets else 1

    @cached_property
    def diffs(self) -> list[Tensor]:
        """``end - start`` per space of the path, ``(R, *S_i)``."""
        lp = self.engine.layer_path
        return [self.engine.diff] if lp is None else [e - b for b, e in zip(lp.start, lp.end)]

    def column(self, t: Tensor) -> Tensor:
        """``(R,)`` or ``(R, T)`` outputs as ``(R, T)``."""
        return t if self.targets else t[:, None]

    def shown(self, t: Tensor) -> Tensor:
        """``(R, T, ...)`` back in the caller's layout: the target axis dropped for one."""
        return t if self.targets else t[:, 0]

    def mean(self, t: Tensor) -> Tensor:
        """Per-row ``(R, T, ...)`` averaged over the baselines, in the caller's layout."""
        return self.s.mean(self.shown(t))

    def evaluations(self, per_row: int | Sequence[int] | Tensor) -> Tensor:
        """``info["gradient_evaluations"]``: ``(B,)``, or ``(B, T)`` with a target axis."""
        n = self.s.evaluations(per_row)
        return n[:, None].expand(-1, self.n_targets).clone() if self.targets else n

    def out_delta(self) -> Tensor:
        """``F(x) - F(x')`` ``(R, T)`` in the accumulation dtype."""
        acc = accumulation_dtype(self.f1.dtype)
        return self.column(self.f1.to(acc) - self.f0.to(acc))

    def keep(self, g: Tensor, i: int, rows: Tensor) -> Tensor:
        """What an integrator sums of gradient ``g`` ``(n, T, *S_i)`` of space ``i``."""
        acc = accumulation_dtype(g.dtype)
        if self.reduce is None:
            return g.to(acc)
        d = self.diffs[i][rows][:, None]
        return self.reduce(g.to(acc) * d.to(acc))

    def squares(self, g: Tensor) -> Tensor:
        """``g ** 2`` as ``keep`` keeps it (reduced alike)."""
        sq = g.to(accumulation_dtype(g.dtype)).square()
        return sq if self.reduce is None else self.reduce(sq)

    def attribution(self, kept: Tensor, i: int) -> Tensor:
        """A weighted sum of ``keep``'s ``(R, T, *K)`` as attributions of space ``i``."""
        if self.reduce is not None:
            return kept
        d = self.diffs[i][:, None]
        return kept * d.to(kept.dtype)

    def points(self) -> tuple[Tensor, Tensor, Tensor]:
        """The shared pass: every row at every node, with each point's weight."""
        rows, flat_a = flat_points(self.rows, self.alphas)
        return rows, flat_a, self.weights.repeat(self.rows)


def given(options: dict, *names: str) -> dict:
    """The entries of a caller's ``options`` among ``names``, for an integrator's constructor
    (whose own defaults fill in the rest, so that they are written once)."""
    return {n: options[n] for n in names if n in options}


def total(t: Tensor) -> Tensor:
    """``(R, T, ...) -> (R, T)``: the sum over everything after the target axis."""
    return t.flatten(2).sum(2)


def totals(ts: Sequence[Tensor]) -> Tensor:
    """``total`` of several spaces' tensors, added (one space: its own)."""
    out = total(ts[0])
    for t in ts[1:]:
        out = out + total(t)
    return out


@dataclass
class Step:
    """One chunk of path points as integrators read it: ``output`` ``(n, T)``, ``grads`` one
    ``(n, T, *S_i)`` per space of the path, ``weights`` each point's weight in its pass."""

    path: Path
    chunk: Chunk
    output: Tensor
    grads: list[Tensor]
    weights: Tensor | None

    @property
    def rows(self) -> Tensor:
        return self.chunk.rows

    @property
    def alphas(self) -> Tensor:
        return self.chunk.alphas

    @cached_property
    def kept(self) -> list[Tensor]:
        return [self.path.keep(g, i, self.rows) for i, g in enumerate(self.grads)]

    @cached_property
    def slope(self) -> Tensor:
        """``dF/da`` at each point ``(n, T)``: the gradient times ``x - x'``, summed."""
        if self.path.reduce is not None:
            return totals(self.kept)
        acc = accumulation_dtype(self.grads[0].dtype)
        return totals([g.to(acc) * d[self.rows][:, None].to(acc)
                       for g, d in zip(self.grads, self.path.diffs)])

    @cached_property
    def squares(self) -> list[Tensor]:
        return [self.path.squares(g) for g in self.grads]


@dataclass
class Integral:
    """A finished integrator: attributions per space (averaged over baselines, in the
    caller's layout), ``delta``, the nodes and weights, and ``info``."""

    attributions: list[Tensor]
    delta: Tensor
    alphas: Any
    weights: Any
    info: dict = field(default_factory=dict)

    def result(self, path: Path, structure: bool = True) -> Attribution:
        """As an ``Attribution`` of one space (the input's structure with ``structure``)."""
        (attr,) = self.attributions
        shown: Any = path.s.structure(attr) if structure else attr
        return Attribution(shown, self.delta,
                           self.alphas, self.weights, self.info)


class Integrator:
    """One path method's arithmetic. It ``rides`` the shared pass on the path's nodes, or
    ``plan`` gives the points of its own pass; ``add`` sees each chunk of its pass;
    ``finish`` returns the ``Integral``. ``shared``: the shared pass's ``(alphas, outputs
    (R, m, T))`` when one ran (IDG's coarse pass reads it). A method whose points depend on
    its gradients (adaptive refinement) overrides ``run``."""

    rides: bool = True

    def plan(self, path: Path, shared: tuple[Tensor, Tensor] | None
             ) -> tuple[Tensor, Tensor, Tensor]:
        raise NotImplementedError

    def add(self, step: Step) -> None:
        raise NotImplementedError

    def finish(self, path: Path) -> Integral:
        raise NotImplementedError

    def run(self, path: Path, shared: tuple[Tensor, Tensor] | None) -> Integral:
        """Its own pass (``plan``), then ``finish``. Cost: a forward and backward per point."""
        rows, alphas, weights = self.plan(path, shared)
        for step in steps_of(path, rows, alphas, weights):
            self.add(step)
        return self.finish(path)


def steps_of(path: Path, rows: Tensor, alphas: Tensor, weights: Tensor | None,
             taps: Sequence[Tap] = (), input_grad: bool = True, want_acts: bool = False,
             on_chunk: Callable[[Chunk], None] | None = None):
    """The engine's chunks at ``(rows, alphas)`` as ``Step``s (tap gradients and activations
    stay on ``step.chunk``). Cost: a forward and ``T`` backwards per point."""
    n_space = len(path.diffs)
    with tqdm(total=len(rows) * path.n_targets, unit="backward", disable=not path.progress,
              file=sys.stderr, desc=f"{path.n_targets} targets", leave=False) as bar:
        for ch in path.engine.gradients(rows, alphas, list(taps), input_grad=input_grad,
                                        want_acts=want_acts):
            grads = ch.grads[:n_space] if input_grad else []
            if not path.targets:
                grads = [g[:, None] for g in grads]
            w = None if weights is None else weights[ch.span]
            if on_chunk is not None:
                on_chunk(ch)
            yield Step(path, ch, path.column(ch.output), grads, w)
            bar.update(len(ch.rows) * path.n_targets)


def integrate(path: Path, integrators: Sequence[Integrator], taps: Sequence[Tap] = (),
              on_chunk: Callable[[Chunk], None] | None = None, input_grad: bool = True,
              want_acts: bool = False) -> list[Integral]:
    """Run ``integrators`` on ``path``: one shared pass on the path's nodes for all that ride
    it (``taps`` and ``on_chunk`` see that pass too; it runs whenever taps are given), then
    each other integrator's own. Returns one ``Integral`` per integrator, in order."""
    riding = [i for i in integrators if i.rides]
    shared = None
    if riding or taps:
        outputs = []
        rows, alphas, weights = path.points()
        for step in steps_of(path, rows, alphas, weights, taps, input_grad, want_acts,
                             on_chunk):
            outputs.append(step.output)
            for integrator in riding:
                integrator.add(step)
        values = torch.cat(outputs).reshape(path.rows, len(path.alphas), path.n_targets)
        shared = (path.alphas, values)
    return [i.finish(path) if i.rides else i.run(path, shared) for i in integrators]
