"""The integrator protocol: what a straight-path method does with the points of its path.

Every path method (IG, left-IG, IDG, IDGI, adaptive IG, total conductance) is one
``Integrator``: it plans its points (or rides a shared pass on its nodes), adds each chunk of
gradients, and finishes its result. It owns its options (``OPTIONS``, checked by its
constructor), so a method with an option is its module and one registry entry. The same
integrator serves the method's own class, ``explain`` (several
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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, ClassVar

import torch
from torch import Tensor
from tqdm import tqdm

from .call import Setup
from .engine import Chunk, PathEngine, accumulation_dtype, guarded
from .layers import Tap
from .quadrature import nodes_weights
from .result import Attribution

#: The path's nodes when a caller gives none: ``steps`` for a method without an
#: error-controlled rule when asked for ``steps="auto"``, and the default rule.
DEFAULT_STEPS, DEFAULT_RULE = 50, "gausslegendre"
#: ``(rule, steps)``: the nodes of a shared pass
Nodes = tuple[str, int]


def rule_tensors(rule: str, steps: int, like: Tensor) -> tuple[Tensor, Tensor]:
    """The rule's nodes and weights as tensors on ``like``'s device, in its dtype (the
    default floating dtype for an integer ``like``)."""
    a, w = nodes_weights(rule, steps)
    dtype = like.dtype if like.is_floating_point() else torch.get_default_dtype()
    return (torch.as_tensor(a, dtype=dtype, device=like.device),
            torch.as_tensor(w, dtype=dtype, device=like.device))


def flat_points(n_rows: int, alphas: Tensor) -> tuple[Tensor, Tensor]:
    """Every row at every node: ``(rows, alphas)`` of length ``n_rows * len(alphas)``, row
    ``r``'s nodes contiguous (point ``r * m + k``)."""
    rows = torch.arange(n_rows, device=alphas.device).repeat_interleave(len(alphas))
    return rows, alphas.repeat(n_rows)


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
    layer_ends: dict[str, tuple[Tap, Tensor, Tensor]] = field(default_factory=dict)
    #: what integrators on this path compute once for all of them (by key)
    memo: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, s: Setup, engine: PathEngine, f0: Tensor, f1: Tensor, nodes: Nodes | None,
           **kw: Any) -> Path:
        """The path with ``nodes`` (``(rule, steps)``, in the dtype of the path's space), or
        with none (``None``: every integrator on it places its own points).
        ``layer_ends``: each tapped layer's activations at both ends, ``(tap, at x', at x)``
        by ``tap_key`` (``tapped_ends``)."""
        if nodes is None:
            return cls(s, engine, f0, f1, None, 0, None, None, **kw)  # type: ignore[arg-type]
        return cls(s, engine, f0, f1, *nodes, *rule_tensors(*nodes, engine.path_diff), **kw)

    def on(self, nodes: Nodes) -> Path:
        """This path on ``nodes`` (itself when they are its own)."""
        if (self.rule, self.steps) == nodes:
            return self
        return replace(self, rule=nodes[0], steps=nodes[1], memo={},
                       **dict(zip(("alphas", "weights"),
                                  rule_tensors(*nodes, self.engine.path_diff))))

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

    def grid(self) -> tuple[Tensor, Tensor, Tensor]:
        """The shared pass: every row at every node, with each point's weight."""
        rows, flat_a = flat_points(self.rows, self.alphas)
        return rows, flat_a, self.weights.repeat(self.rows)


def given(options: dict, *names: str) -> dict:
    """The entries of a caller's ``options`` among ``names``, for an integrator's constructor
    (whose own defaults fill in the rest, so that they are written once)."""
    return {n: options[n] for n in names if n in options}


def nodes_of(options: dict, rule: str | None = None) -> Nodes:
    """The nodes a riding integrator asks of ``options``: its fixed ``rule`` or the caller's
    (default ``DEFAULT_RULE``), and ``steps`` (``"auto"``: ``DEFAULT_STEPS``)."""
    steps = options.get("steps", DEFAULT_STEPS)
    nodes = (rule or options.get("rule") or DEFAULT_RULE, DEFAULT_STEPS if steps == "auto"
             else steps)
    nodes_weights(*nodes)  # the rule and the count checked, in the rule's words (cached)
    return nodes


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
class Points:
    """One chunk of path points as integrators read it: ``output`` ``(n, T)``, ``grads`` one
    ``(n, T, *S_i)`` per space of the path, ``weights`` each point's weight in its pass,
    ``layers`` / ``acts``: the gradients / activations of the tapped layers (``tap_key``)."""

    path: Path
    chunk: Chunk
    output: Tensor
    grads: list[Tensor]
    weights: Tensor | None
    layers: dict[str, Tensor] = field(default_factory=dict)
    acts: dict[str, Tensor] = field(default_factory=dict)

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
    caller's layout), ``delta``, the nodes and weights, and ``info``. ``layer``: the
    attributions are a layer's, not the input's (no input structure to restore)."""

    attributions: list[Tensor]
    delta: Tensor
    alphas: Any
    weights: Any
    info: dict = field(default_factory=dict)
    layer: bool = False

    def result(self, path: Path, structure: bool = True) -> Attribution:
        """As an ``Attribution`` of one space (the input's structure with ``structure``)."""
        (attr,) = self.attributions
        shown: Any = path.s.structure(attr) if structure and not self.layer else attr
        return Attribution(shown, self.delta, self.alphas, self.weights, self.info)


class Integrator:
    """One path method's arithmetic. It ``rides`` a shared pass on its ``nodes`` (several
    integrators with the same nodes share one), or ``plan`` gives the points of its own pass;
    ``add`` sees each chunk of its pass; ``finish`` returns the ``Integral``. ``shared``: the
    call's shared pass's ``(alphas, outputs (R, m, T))`` when one ran (IDG's coarse pass reads
    it). A method whose points depend on its gradients (adaptive refinement) overrides
    ``run``.

    ``OPTIONS``: what a caller may set besides ``steps`` and ``rule`` (``explain``'s
    ``(name, {option: value})``, ``SequenceAttribution(lm, name, **options)``, the command
    line's ``--method name:option=value``), checked by the constructor; ``RULE``: the nodes it
    rides whatever the caller's rule (IDGI's ``k / steps``), which then is not an option.
    """

    rides: bool = True
    OPTIONS: ClassVar[tuple[str, ...]] = ()
    RULE: ClassVar[str | None] = None
    nodes: Nodes | None = None

    @classmethod
    def of(cls, options: dict) -> Integrator:
        """The integrator ``options`` ask for (unknown names are refused by ``accepts``):
        ``OPTIONS`` go to the constructor, ``rule`` and ``steps`` give the nodes it rides.
        ``steps="auto"``: ``DEFAULT_STEPS`` here, for an integral without a local error
        check; one with a check overrides ``of``."""
        integrator = cls(**given(options, *cls.OPTIONS))
        integrator.nodes = nodes_of(options, cls.RULE)
        return integrator

    @classmethod
    def accepts(cls) -> tuple[str, ...]:
        """Every option name a caller may give this integrator."""
        return ("steps", *(() if cls.RULE else ("rule",)), *cls.OPTIONS)

    def taps(self, model: Any) -> list[Tap]:
        """The layers whose gradients (``Points.layers``, activations in ``Points.acts``) it
        reads on the pass it rides; their activations at both ends are ``Path.layer_ends``."""
        return []

    wants_acts: bool = False

    def start(self, path: Path) -> None:
        """Called before the pass it rides (what it measures first, outside that pass)."""

    def plan(self, path: Path, shared: tuple[Tensor, Tensor] | None
             ) -> tuple[Tensor, Tensor, Tensor]:
        raise NotImplementedError

    def add(self, points: Points) -> None:
        raise NotImplementedError

    def finish(self, path: Path) -> Integral:
        raise NotImplementedError

    def run(self, path: Path, shared: tuple[Tensor, Tensor] | None) -> Integral:
        """Its own pass (``plan``), then ``finish``. Cost: a forward and backward per point."""
        rows, alphas, weights = self.plan(path, shared)
        for points in points_of(path, rows, alphas, weights):
            self.add(points)
        return self.finish(path)


def tap_key(tap: Tap) -> str:
    """How ``Points.layers`` and ``Points.acts`` name a tap: its layer's name, or the
    module's identity for a module given as itself; ``:input`` for its input."""
    layer = tap.layer if isinstance(tap.layer, str) else f"<module {id(tap.layer)}>"
    return f"{layer}:input" if tap.use_input else layer


def points_of(path: Path, rows: Tensor, alphas: Tensor, weights: Tensor | None,
              taps: Sequence[Tap] = (), input_grad: bool = True, want_acts: bool = False
              ) -> Iterator[Points]:
    """The engine's chunks at ``(rows, alphas)`` as ``Points`` (the gradients and activations
    of ``taps``, layers given by name, by that name). Cost: a forward and ``T`` backwards
    per point."""
    n_space = len(path.diffs) if input_grad else 0
    names = [tap_key(t) for t in taps]
    with tqdm(total=len(rows) * path.n_targets, unit="backward", disable=not path.progress,
              file=sys.stderr, desc=f"{path.n_targets} targets", leave=False) as bar:
        for ch in path.engine.gradients(rows, alphas, list(taps), input_grad=input_grad,
                                        want_acts=want_acts):
            grads = ch.grads[:n_space]
            if not path.targets:
                grads = [g[:, None] for g in grads]
            w = None if weights is None else weights[ch.span]
            yield Points(path, ch, path.column(ch.output), grads, w,
                         dict(zip(names, ch.grads[n_space:], strict=True)),
                         dict(zip(names, ch.acts)))
            bar.update(len(ch.rows) * path.n_targets)


def integrate(path: Path, integrators: Sequence[Integrator]) -> list[Integral]:
    """Run ``integrators`` on ``path``: one shared pass per distinct ``nodes`` among those
    that ride (the pass on the path's own nodes gives the ``shared`` values the others may
    read), then each other integrator's own. Returns one ``Integral`` per integrator, in
    order. Cost: a forward and ``T`` backwards per point of each pass."""
    groups: dict[Nodes, list[Integrator]] = {}
    for integrator in integrators:
        if integrator.rides:
            assert integrator.nodes is not None  # set by ``of``
            groups.setdefault(integrator.nodes, []).append(integrator)
    own = (path.rule, path.steps) if path.rule else None
    shared, paths = None, {}
    for nodes, group in groups.items():
        p = paths[nodes] = path.on(nodes)
        tapped = [i.taps(path.engine.model) for i in group]
        taps = list({tap_key(t): t for ts in tapped for t in ts}.values())
        for integrator in group:
            integrator.start(p)
        outputs = []
        for points in points_of(p, *p.grid(), taps, input_grad=not all(tapped),
                                want_acts=any(i.wants_acts for i in group)):
            outputs.append(points.output)
            for integrator in group:
                integrator.add(points)
        if nodes == own:
            shared = (p.alphas, torch.cat(outputs).reshape(p.rows, len(p.alphas), p.n_targets))
    return [i.finish(paths[i.nodes]) if i.rides else i.run(path, shared) for i in integrators]


def tapped_ends(engine: PathEngine, integrators: Sequence[Integrator], model: Any
                ) -> tuple[Tensor, Tensor, dict[str, tuple[Tap, Tensor, Tensor]]]:
    """``F(x)``, ``F(x')`` and, from the same forwards, the activations at both ends of every
    layer the ``integrators`` tap, for ``Path.layer_ends``. Cost: two forwards per row
    (``engine.ends``), two more when some taps read inputs and others outputs (one forward
    reads one kind)."""
    taps = list({tap_key(t): t for i in integrators for t in i.taps(model)}.values())
    kinds = [False, True] if len({t.use_input for t in taps}) > 1 else \
        [taps[0].use_input if taps else False]
    out: dict[str, tuple[Tap, Tensor, Tensor]] = {}
    for use_input in kinds:
        alike = [t for t in taps if t.use_input == use_input]
        f1, f0, ends = engine.ends([t.layer for t in alike], use_input)
        out.update({tap_key(t): (t, y0, y1) for t, (y0, y1) in zip(alike, ends)})
    return f1, f0, out


def straight(model: Any, s: Setup, integrator: Integrator, batch_size: int | str
             ) -> Attribution:
    """The straight-path recipe of the method classes: the engine on ``s``, ``F`` at both
    ends, ``integrator`` on the path (on its nodes when it rides), the result in the input's
    structure. Cost: two forwards per row, then the integrator's."""
    with guarded(model):
        engine = s.engine(batch_size)
        f1, f0, _ = engine.ends([])
        path = Path.of(s, engine, f0, f1, integrator.nodes)
        (integral,) = integrate(path, [integrator])
    return integral.result(path)
