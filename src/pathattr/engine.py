"""The path engine: evaluate a model at many path points, chunked, with gradients at taps.

A path point is a pair (example row, alpha). Points of several examples and several alphas
share a chunk; every method on a straight or layer-space path is arithmetic on the chunks this
module yields. Each row of a chunk is independent of the others (models are in eval mode), so
one backward of the summed target gives every row its own gradient.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext, suppress
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor, nn

from .errors import NonFiniteOutput, PathError, one_line
from .forward import ModelCall, Packer
from .guard import model_guard
from .layers import (
    LayerNotReached,
    StopForward,
    Tap,
    check_reached,
    stop_when_tapped,
    tap_layers,
)

__all__ = ["Chunk", "ChunkSize", "LayerPath", "PathEngine", "PointEvaluator", "Tap", "chunk_size"]
from .targets import Target

#: Default memory budget for one chunk's activations and gradients (bytes).
MEMORY_BUDGET = 2 * 1024**3
#: Largest chunk of big points: on 2 CPU cores, IG on EfficientNet-Lite0 took 8.9 s in chunks of
#: 16, 11.0 s in chunks of 19 and 12.2 s in chunks of 32 (benchmarks/bench_ig); a GPT-2 or T5
#: sequence runs as fast or faster in 16 as in 4 or 8.
BIG_POINT_CAP = 16
BIG_POINT_BYTES = 4 * 1024**2
#: Largest chunk for convolutional nets on images on the CPU, where the activations of a chunk
#: must stay in cache: on 2 cores, EfficientNet-Lite0 (106 MB of activations per 224 px image)
#: ran a forward in 13.3 / 9.6 / 8.1 / 14.1 / 20.0 ms per image in chunks of 1 / 2 / 4 / 8 /
#: 16, a forward and backward in 24.0 / 22.3 / 23.2 / 58.4 ms in chunks of 2 / 4 / 8 / 16, and
#: IG with 50 steps on 4 photos in 4.7 / 3.6 / 4.5 / 8.4 s in chunks of 2 / 4 / 8 / 16.
CONV_CPU_CAP = 4
#: The path point just after the baseline where ``ends`` looks for a jump of the output: a
#: normalisation layer that sees exactly zero at the baseline (a zero pad row into RMSNorm, a
#: zero image into a LayerNorm'd patch embedding) is scale-invariant on the whole open path,
#: so the output jumps at ``alpha = 0`` and no quadrature can integrate it.
SINGULAR_ALPHA = 1e-5
#: The part of ``F(x) - F(x')`` that may change between ``0`` and ``SINGULAR_ALPHA``: a smooth
#: path changes by about ``SINGULAR_ALPHA`` of it there, a singular one by nearly all of it.
SINGULAR_SHARE = 0.5


@dataclass
class LayerPath:
    """A straight path in the activation space of one or several layers:
    ``start_i + alpha * (end_i - start_i)`` for each layer ``i``, all at the same ``alpha``.

    The model runs on the engine's inputs and each layer's activation is replaced by its path
    point; gradients are taken with respect to those points (first in ``Chunk.grads``).
    """

    layers: Sequence[str | nn.Module]
    start: list[Tensor]
    end: list[Tensor]
    use_input: bool = False


@dataclass
class Chunk:
    """One evaluated chunk of path points.

    rows: example index of each point; alphas: its path position; span: its positions in the
    flat point list; output: the target scalar per point; grads / acts: per tap (input first
    when requested), shape ``(n, *tap_shape)``. A target with several outputs per row gives
    ``output`` ``(n, T)`` and gradients ``(n, T, *tap_shape)``.
    """

    rows: Tensor
    alphas: Tensor
    span: slice
    output: Tensor
    grads: list[Tensor] = field(default_factory=list)
    acts: list[Tensor] = field(default_factory=list)


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """Where sums over path points are kept: float32 for a half-precision model (bf16 sums of
    50 gradients lose 2-3 digits, and a bf16 gap can say converged when it is not)."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _expand(a: Tensor, like: Tensor) -> Tensor:
    return a.reshape(-1, *([1] * (like.dim() - 1)))


def is_conv(model: object, x: Tensor) -> bool:
    return x.dim() == 4 and isinstance(model, nn.Module) and any(
        isinstance(m, nn.Conv2d) for m in model.modules())


def activation_bytes(call: ModelCall | nn.Module, example: Tensor) -> int:
    """Bytes of all module outputs for one example (the memory a backward keeps per point);
    ``call`` is a ``ModelCall`` or a model taking ``example`` alone.

    Cost: one forward pass on one example under inference mode.
    """
    if not isinstance(call, ModelCall):
        call = ModelCall(call, Packer.of([example], single=True), len(example))
    if len(example) == 0:  # an empty batch: nothing to measure, nothing to hold
        return 1
    if not isinstance(call.model, nn.Module):
        return example.numel() * example.element_size() * 50
    total = 0

    def count(_m, _a, out):
        nonlocal total
        if isinstance(out, Tensor):
            total += out.numel() * out.element_size()

    handle = nn.modules.module.register_module_forward_hook(count)
    try:
        with torch.inference_mode():
            call(example[:1], torch.zeros(1, dtype=torch.long, device=example.device))
    finally:
        handle.remove()
    return max(total, example[:1].numel() * example.element_size())


def chunk_size(call: ModelCall | nn.Module, example: Tensor, batch_size: int | str, n_points: int,
               budget: int = MEMORY_BUDGET) -> int:
    """Points per chunk: ``batch_size`` if an int, else from the memory budget and cache cap."""
    if batch_size != "auto":
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer or 'auto', got {batch_size!r}")
        return batch_size
    # module outputs are what a backward keeps alive; gradients come and go one layer at a time
    per_point = activation_bytes(call, example)
    cap = BIG_POINT_CAP if per_point > BIG_POINT_BYTES else 4096
    model = call.model if isinstance(call, ModelCall) else call
    if example.device.type == "cpu" and per_point > BIG_POINT_BYTES and is_conv(model, example):
        cap = CONV_CPU_CAP
    return int(max(1, min(n_points, budget // per_point, cap)))


class ChunkSize:
    """Points per chunk for every pass of one call: ``batch_size`` if an int (checked now),
    else measured from the memory budget on first use (``chunk_size``) and kept.

    Called with ``n``, returns the chunk for a pass over ``n`` points. Cost: the first
    ``"auto"`` call runs one forward of one example; later calls are free.
    """

    def __init__(self, call: ModelCall | nn.Module, example: Tensor, batch_size: int | str,
                 budget: int = MEMORY_BUDGET):
        self.call, self.example, self.budget = call, example, budget
        self._bs = chunk_size(call, example, batch_size, 1) if batch_size != "auto" else None

    def __call__(self, n_points: int) -> int:
        if self._bs is None:
            self._bs = chunk_size(self.call, self.example, "auto", 1 << 30, self.budget)
        return max(1, min(self._bs, n_points))


class PathEngine:
    """Chunked evaluation of ``model`` along straight paths from ``baseline`` to ``x``.

    ``x`` and ``baseline`` have the same shape ``(R, *S)``, packed (``forward.Packer``).
    ``target`` is resolved (``targets.resolve_target``) for these rows: row ``r`` is its row
    ``r % target.n``. ``examples``: the example each row belongs to, for indexing forward
    arguments (default ``r % call.n``). With a ``layer_path`` the path runs in those layers'
    space: the model gets the inputs ``x`` and the layers' activations are replaced. The model
    state guard is held by the caller (``with model_guard(model)``), so that one guard spans
    every pass of a method.
    """

    def __init__(self, call: ModelCall | Callable, x: Tensor, baseline: Tensor, target: Target,
                 batch_size: int | str | ChunkSize = "auto", channels_last: bool | str = "auto",
                 examples: Tensor | None = None, layer_path: LayerPath | None = None):
        if not isinstance(call, ModelCall):  # a bare model taking x as it is
            call = ModelCall(call, Packer.of([x], single=True), len(x))
        self.call, self.x, self.baseline, self.target = call, x, baseline, target
        self.layer_path = layer_path
        self.model = call.model
        self.examples = (torch.arange(len(x), device=x.device) % max(call.n, 1)
                         if examples is None else examples)
        self.diff = x - baseline
        self.batch_size = (batch_size if isinstance(batch_size, ChunkSize)
                           else ChunkSize(call, x, batch_size))
        self.channels_last = is_conv(self.model, x) if channels_last == "auto" else channels_last

    @property
    def path_diff(self) -> Tensor:
        """``end - start`` of the path in its own space: the input's, or the (first) layer's."""
        lp = self.layer_path
        return self.diff if lp is None else lp.end[0] - lp.start[0]

    def evaluator(self) -> PointEvaluator:
        """Evaluation at arbitrary points of this call, in this engine's chunks."""
        return PointEvaluator(self.call, self.batch_size)

    def points(self, rows: Tensor, alphas: Tensor) -> Tensor:
        base = self.baseline[rows]
        if not base.is_floating_point():
            # integer inputs (token ids) have no path between the ends, only the ends
            if ((alphas != 0) & (alphas != 1)).any():
                raise ValueError("integer inputs (token ids) have no straight path; the path "
                                 "must run in a layer's space (path_layer=, e.g. the token "
                                 "embeddings)")
            return torch.where(_expand(alphas == 1, base), self.x[rows], base)
        p = base + _expand(alphas, base) * self.diff[rows]
        return p.contiguous(memory_format=torch.channels_last) if self.channels_last else p

    def path_specs(self, state: dict[int, Tensor]) -> list[Tap]:
        """Hooks that replace each layer of ``self.layer_path`` by its point in ``state``."""
        lp = self.layer_path
        if lp is None:
            return []
        specs = []
        for i, layer in enumerate(lp.layers):
            def replace(t: Tensor, i=i, layer=layer) -> Tensor:
                p = state[i]
                if t.shape[1:] != p.shape[1:] or len(t) != len(p):
                    raise ValueError(
                        f"layer {layer!r} changed shape between runs: {tuple(p.shape)} then "
                        f"{tuple(t.shape)} for {len(p)} path points; a layer whose batch is "
                        f"not its first dimension (sequence-first, (L, B, d)) needs it "
                        f"declared: SequenceAttribution(..., batch_dim=1)")
                return p
            specs.append(Tap(layer, lp.use_input, replace))
        return specs

    def inputs_at(self, r: Tensor, a: Tensor, state: dict[int, Tensor], grad: bool) -> Tensor:
        """The model input for points ``(r, a)``; on a layer path, also each layer's point
        (into ``state``, requiring grad with ``grad``)."""
        lp = self.layer_path
        if lp is None:
            inp = self.points(r, a)
            return inp.requires_grad_(True) if grad else inp
        for i, (s0, s1) in enumerate(zip(lp.start, lp.end)):
            point = s0[r] + _expand(a, s0) * (s1[r] - s0[r])
            state[i] = point.requires_grad_(True) if grad else point
        inp = self.x[r]
        return inp.contiguous(memory_format=torch.channels_last) if self.channels_last else inp

    def gradients(self, rows: Tensor, alphas: Tensor, taps: Sequence[Tap] = (),
                  input_grad: bool = True, want_acts: bool = False) -> Iterator[Chunk]:
        """Forward and backward at each point; yields chunks in point order.

        ``input_grad``: include the gradient with respect to the path point (the input, or each
        layer's activation on the engine's ``layer_path``) as the first entries of ``grads``.
        Layer taps add their gradients (and activations with ``want_acts``). Without an input
        gradient no autograd graph is built below the first tapped layer. Cost: one forward and
        one backward per point.
        """
        specs = list(taps)
        state: dict[int, Tensor] = {}
        path_specs = self.path_specs(state)
        n_path = len(path_specs)
        on_path = self.layer_path is not None
        if not input_grad and not on_path:
            def cut(t: Tensor) -> Tensor:
                # Only the first tapped layer reached is cut: a later tap already depends on
                # it, and cutting there too would drop the earlier layer's gradient through it.
                return t if t.requires_grad else t.detach().requires_grad_(True)
            specs = [replace(t, replace=cut) for t in specs]
        n_points = len(rows)
        bs = self.batch_size(n_points)
        with tap_layers(self.model, path_specs + specs) as hooks, torch.enable_grad():
            # no points (an empty batch): one empty chunk still gives every shape
            for start in range(0, max(n_points, 1), bs):
                span = slice(start, min(start + bs, n_points))
                r, a = rows[span], alphas[span]
                for h in hooks:
                    h.reset()
                inp = self.inputs_at(r, a, state, grad=input_grad or on_path)
                out = self.evaluate(inp, r, a)
                vals = [h.check() for h in hooks]
                points, tapped = (vals[:n_path], vals[n_path:]) if on_path else ([inp], vals)
                wrt = [*points, *tapped] if input_grad else tapped
                if not input_grad:
                    lp = self.layer_path
                    check_reached(out, lp.layers if lp is not None else
                                  [h.name for h in hooks[n_path:]])
                if out.dim() == 2:  # several outputs per row: one backward each
                    grads = per_output_grads(out, wrt)
                else:
                    grads = torch.autograd.grad(out.sum(), wrt, allow_unused=True,
                                                materialize_grads=True) if wrt else ()
                acts = [v.detach() for v in tapped] if want_acts else []
                yield Chunk(r, a, span, out.detach(), list(grads), acts)

    def evaluate(self, inp: Tensor, rows: Tensor, alphas: Tensor | None = None) -> Tensor:
        """The target scalar of the model at ``inp``, whose rows are the engine's ``rows`` at
        path positions ``alphas``. Raises ``NonFiniteOutput`` (naming the example and the
        point) where it is NaN or inf: no attribution can be finite there."""
        out = self.target.select(self.call(inp, self.examples[rows]), rows)
        bad = ~torch.isfinite(out.detach())
        if bad.any():
            i = int(bad.nonzero()[0, 0])
            where = "" if alphas is None else f" at path point alpha={float(alphas[i]):.4g}"
            raise NonFiniteOutput(
                f"the model's target output is {float(out.detach().flatten()[bad.flatten()][0])}"
                f" for example {int(self.examples[rows[i]])}{where} (row {int(rows[i])} of the "
                f"path): check the model and the baselines")
        return out

    def values(self, rows: Tensor, alphas: Tensor) -> Tensor:
        """The target output at each point, forward only. Returns ``(n_points,)``."""
        return self._forward_only(rows, alphas, [], False)[0]

    def ends(self, layers: Sequence[str | nn.Module], use_input: bool = False
             ) -> tuple[Tensor, Tensor, list[tuple[Tensor, Tensor]]]:
        """``F(x)``, ``F(baseline)`` per example and, from the same forward passes, each layer's
        activation (or input) at both ends as ``(at baseline, at x)``, each ``(B, *shape)``.

        On a straight path in input space, raises ``PathError`` where the output jumps right
        after the baseline (``check_smooth_start``; a layer path was checked when it was set,
        ``use_layer_path``). Cost: two forward passes per example, three with that check (the
        third at ``SINGULAR_ALPHA``)."""
        b = self.x.shape[0]
        rows = torch.arange(b, device=self.x.device)
        straight = self.layer_path is None and self.baseline.is_floating_point()
        alphas = [self.x.new_ones(b), self.x.new_zeros(b)]
        if straight:
            alphas.append(self.x.new_full((b,), SINGULAR_ALPHA))
        dtype = self.layer_path.start[0].dtype if self.layer_path else self.x.dtype
        try:
            v, acts = self._forward_only(torch.cat([rows] * len(alphas)),
                                         torch.cat(alphas).to(dtype), layers, use_input)
        except (RuntimeError, ValueError, TypeError, IndexError) as e:
            if b:
                raise
            raise ValueError(f"x is an empty batch, and the model cannot run on zero rows "
                             f"({one_line(e)}); the layers' shapes need one forward: leave "
                             f"empty batches out") from None
        f1, f0 = v[:b], v[b:2 * b]
        if straight:
            self.check_smooth_start(f1, f0, v[2 * b:])
        return f1, f0, [(a[b:2 * b], a[:b]) for a in acts]

    def check_smooth_start(self, f1: Tensor, f0: Tensor, f_eps: Tensor) -> None:
        """Raise ``PathError`` for an example whose output moves by more than
        ``SINGULAR_SHARE`` of ``F(x) - F(x')`` between ``alpha = 0`` and ``SINGULAR_ALPHA``."""
        if f1.dim() > 1:  # several outputs per row: the largest share decides
            f1, f0, f_eps = (t.flatten(1) for t in (f1, f0, f_eps))
        total, start = (f1 - f0).abs(), (f_eps - f0).abs()
        tiny = 1e3 * torch.finfo(total.dtype).eps * (1 + f0.abs())
        bad = (start > SINGULAR_SHARE * total) & (total > tiny)
        if bad.any():
            i = int(bad.nonzero()[0, 0])
            where = "the layer path" if self.layer_path is not None else "the straight path"
            raise PathError(
                f"example {int(self.examples[i])}: on {where} the output changes by "
                f"{float(start.flatten()[bad.flatten()][0]):.4g} of its total "
                f"{float(total.flatten()[bad.flatten()][0]):.4g} between alpha=0 and "
                f"alpha={SINGULAR_ALPHA:g}: it jumps at the baseline, so no quadrature can "
                f"integrate it. This happens when a normalisation layer (LayerNorm, RMSNorm, "
                f"GroupNorm) sees exactly zero at the baseline and is scale-invariant "
                f"everywhere else on the path. Use a baseline whose normalised activations are "
                f"not zero: for images a blurred or constant non-zero image "
                f"(pathattr.baselines), for token ids a pad or mask id whose embedding row is "
                f"not zero, or a small random baseline")

    def use_layer_path(self, path: LayerPath, f1: Tensor, f0: Tensor) -> None:
        """Run the path in ``path``'s space, after checking that its start reproduces
        ``f0 = F(x')`` from the plain forward on the baselines (``f1 = F(x)``).

        On a layer path the model gets the inputs ``x`` and only the layers' activations
        move; a model that reads its inputs beyond those layers (position ids derived from the
        padding, pooling at an end-of-sequence position, a mask computed from the ids) would
        start the path elsewhere and its completeness check would be meaningless, so that
        raises ``PathError``, as does a jump right after the start (``check_smooth_start``).
        Cost: two forward passes per example.
        """
        self.layer_path = path
        b = len(self.x)
        rows = torch.arange(b, device=self.x.device)
        alphas = torch.zeros(2 * b, dtype=path.start[0].dtype, device=self.x.device)
        alphas[b:] = SINGULAR_ALPHA
        v = self.values(torch.cat([rows, rows]), alphas)
        g0 = v[:b]
        if g0.dim() > 1:
            f1, f0, g0 = (t.flatten(1) for t in (f1, f0, g0))
        eps = torch.finfo(g0.dtype).eps
        bad = (g0 - f0).abs() > 1e-3 * (f1 - f0).abs() + 1e3 * eps * (1 + f0.abs())
        if bad.any():
            i = int(bad.nonzero()[0, 0])
            layers = ", ".join(repr(n if isinstance(n, str) else type(n).__name__)
                               for n in path.layers)
            same = (g0 - f1).abs() <= 1e3 * eps * (1 + f1.abs())
            if bool(same.reshape(len(same), -1).all(1)[i]):
                # the layer at its baseline leaves the output at F(x): it does not reach it
                raise LayerNotReached(
                    f"example {int(self.examples[i])}: the target output does not depend on "
                    f"layer {layers}: with the layer at its baseline value the model still "
                    f"gives F(x). It runs, but its output never reaches the model's output; "
                    f"attribute to a layer on the way to the output")
            raise PathError(
                f"example {int(self.examples[i])}: the path in the space of {layers} does not "
                f"start at the baseline: with the layer at its baseline value the model gives "
                f"{float(g0.flatten()[bad.flatten()][0]):.6g}, but on the baseline itself "
                f"{float(f0.flatten()[bad.flatten()][0]):.6g}. The model reads its inputs "
                f"other than through this layer (position ids computed from the padding, "
                f"as RoBERTa does; pooling at an end-of-sequence token, as CLIP does; a mask "
                f"derived from the ids). Pass what it derives explicitly (e.g. "
                f"forward_kwargs={{'position_ids': ...}} computed from the input), use a "
                f"baseline with the input's special tokens and padding, or attribute to a "
                f"layer that everything the output depends on passes through")
        self.check_smooth_start(f1, g0, v[b:].reshape(g0.shape))

    def activations(self, layers: Sequence[str | nn.Module], rows: Tensor, alphas: Tensor,
                    use_input: bool = False) -> list[Tensor]:
        """Each layer's activation (or input) at each point, ``(n, *shape)`` per layer.

        Cost: per point one forward pass under inference mode, stopped as soon as every layer
        has run.
        """
        return self._forward_only(rows, alphas, layers, use_input, stop=True)[1]

    def _forward_only(self, rows: Tensor, alphas: Tensor, layers: Sequence[str | nn.Module],
                      use_input: bool, stop: bool = False) -> tuple[Tensor, list[Tensor]]:
        """Target output ``(n,)`` and the layers' activations at each point, inference mode.

        Activations are copied when their layer runs, so later in-place ops cannot change them.
        With ``stop`` each forward ends once every layer has run, and the output is empty.
        """
        specs = [Tap(layer, use_input) for layer in layers]
        state: dict[int, Tensor] = {}
        path_specs = self.path_specs(state)
        n = len(rows)
        bs = self.batch_size(n)
        out: list[Tensor] = []
        acts: list[list[Tensor]] = [[] for _ in specs]
        with tap_layers(self.model, path_specs, copy=True) as path_taps, \
                tap_layers(self.model, specs, copy=True) as taps, torch.inference_mode(), \
                (stop_when_tapped(taps) if stop else nullcontext()):
            for start in range(0, max(n, 1), bs):  # an empty chunk when there are no points
                r = rows[start:start + bs]
                for t in [*path_taps, *taps]:
                    t.reset()
                a = alphas[start:start + bs]
                inp = self.inputs_at(r, a, state, grad=False)
                with suppress(StopForward):
                    out.append(self.evaluate(inp, r, a))
                for a, t in zip(acts, taps):
                    a.append(t.check())
        dtype = self.layer_path.start[0].dtype if self.layer_path else self.x.dtype
        empty = self.x.new_zeros(0, dtype=dtype if dtype.is_floating_point else None)
        return (torch.cat(out) if out else empty), [torch.cat(a) for a in acts]


class PointEvaluator:
    """``F`` and ``dF/dx`` at arbitrary points of one call, for methods whose points are not on
    a straight path (Guided IG, Blur IG, AGI). ``chunk``: the call's ``ChunkSize``, so that the
    budget is measured once however many evaluations a method makes.

    ``target`` is resolved for the points' rows, or for the examples when row ``r`` is example
    ``r % n``; ``examples``: the example of each point, default ``r % call.n``.
    """

    def __init__(self, call: ModelCall, chunk: ChunkSize):
        self.call, self.chunk = call, chunk

    def _engine(self, points: Tensor, target: Target, examples: Tensor | None) -> PathEngine:
        return PathEngine(self.call, points, points, target, self.chunk, examples=examples)

    def gradients(self, points: Tensor, target: Target, examples: Tensor | None = None
                  ) -> tuple[Tensor, Tensor]:
        """``(F, dF/dx)`` at each point. Cost: one forward+backward per point, chunked."""
        rows = torch.arange(len(points), device=points.device)
        chunks = list(self._engine(points, target, examples).gradients(
            rows, points.new_ones(len(points))))
        return torch.cat([c.output for c in chunks]), torch.cat([c.grads[0] for c in chunks])

    def values(self, points: Tensor, target: Target, examples: Tensor | None = None) -> Tensor:
        """``F`` at each point, forward only. Cost: one forward per point, chunked."""
        return self._engine(points, target, examples).values(
            torch.arange(len(points), device=points.device), points.new_ones(len(points)))


def per_output_grads(out: Tensor, wrt: list[Tensor]) -> list[Tensor]:
    """The gradient of each column of ``out`` ``(n, T)`` with respect to each of ``wrt``, as
    ``(n, T, *shape)``: one backward per column on the same forward graph."""
    cols = []
    for t in range(out.shape[1]):
        cols.append(torch.autograd.grad(out[:, t].sum(), wrt, retain_graph=t < out.shape[1] - 1,
                                        allow_unused=True, materialize_grads=True))
    if not cols:
        return [w.new_zeros((w.shape[0], 0, *w.shape[1:])) for w in wrt]
    return [torch.stack([c[i] for c in cols], 1) for i in range(len(wrt))]


def guarded(model: object):
    """The guard every method holds for the whole of one call."""
    return model_guard(model, freeze_params=True)
