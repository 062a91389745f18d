"""DeepLIFT (Shrikumar et al. 2017) with the Rescale and RevealCancel rules, to the input and to
a layer's neurons.

    C_i = (x_i - x'_i) * M_i,    sum_i C_i = F(x) - F(x')   (summation-to-delta)

where the multiplier ``M`` is the chain rule with each nonlinearity's derivative replaced by
its DeepLIFT multiplier (``deeplift.mode``). One forward on ``x'`` that records what the rules
need, one forward on ``x`` and one backward on ``x`` alone.

Rules work per operation, not per module: a module called twice, functional activations
(``F.relu``, ``torch.sigmoid``) and residual additions are all seen, because a
``TorchFunctionMode`` intercepts every torch call during the forward. (A ``torch.fx`` trace
would also see functional calls, but fails on data-dependent Python and needs a traceable
model; the mode works on whatever the model's Python runs.)

RevealCancel applies at a nonlinearity whose input comes straight from ``Linear``/``Conv1d``/
``Conv2d``/``Conv3d`` (optionally through eval ``BatchNorm``): there the positive and negative
terms of the layer get separate multipliers. Every other nonlinearity uses Rescale;
``info["rules"]`` counts how often each rule was applied.
"""

from __future__ import annotations

import inspect
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor, nn

from ...baselines import BaselineSpec
from ...call import ConvergenceDelta, Inputs, Setup
from ...engine import MEMORY_BUDGET, ChunkSize, accumulation_dtype, guarded, per_output_grads
from ...errors import NonFiniteOutput
from ...forward import OutputSpec, Packer
from ...integrate import Integral, totals
from ...layers import LayerSpec, Tap, check_reached, resolve_layer, tap_layers, tensor_elements
from ...result import Attribution
from ...targets import TargetSpec
from ...validate import first_nonfinite
from .mode import DeepLiftMode
from .ops import NoDeepLiftRule

if TYPE_CHECKING:
    from ...layers import Reading

Nonlinearity = Literal["rescale", "revealcancel"]
#: Batches of at most this many rows run as one chunk without measuring the model.
SMALL = 16
NONLINEARITY_RULES = ("rescale", "revealcancel")


def _check(model: object, nonlinearity: str) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"DeepLIFT needs the model as an nn.Module, got {type(model).__name__}")
    if nonlinearity not in NONLINEARITY_RULES:
        raise ValueError(f"nonlinearity must be one of {', '.join(NONLINEARITY_RULES)} (the rule "
                         f"for nonlinearities), got {nonlinearity!r}")


def _forward(s: Setup, mode: DeepLiftMode, rows: Tensor, x: Tensor, x_ref: Tensor,
             taps: Sequence[Reading] = ()) -> tuple[Tensor, Tensor, list[Tensor]]:
    """The two runs every DeepLIFT chunk makes on its ``rows``: the target at the inputs
    (differentiable) and at the references (recording, detached), each ``(n,)`` or ``(n, T)``,
    and the tapped layers' activations on the reference run (detached)."""
    with mode.reference():
        out_ref = s.target.select(s.call(x_ref, rows), rows)
    acts_ref = [t.check().detach() for t in taps]
    for t in taps:
        t.reset()
    with mode.inputs():
        out = s.target.select(s.call(x, rows), rows)
    mode.check_consumed()
    _check_finite(s, rows, out.detach(), "the model's target output at the input")
    _check_finite(s, rows, out_ref.detach(), "the model's target output at the baseline")
    return out, out_ref.detach(), acts_ref


def _model_ends(s: Setup, mode: DeepLiftMode, rows: Tensor, out: Tensor, out_ref: Tensor
                ) -> tuple[Tensor, Tensor]:
    """``F(x), F(x')`` that the gap is measured against: the model's own outputs. A widened
    run (half-precision model) computed its float32 outputs; then the model runs once more on
    both, plainly (two forwards), so ``delta`` includes the model's own rounding. So does a run
    that replaced a detached value by the reference's (a softmax's shift): its output must be
    the model's, else the detached value mattered and DeepLIFT has no rule for it."""
    if not (mode.widen or mode.substituted):
        return out.detach(), out_ref
    with torch.no_grad():
        ends = [s.target.select(s.call(t[rows], rows), rows) for t in (s.x, s.baseline)]
    if mode.widen:
        ends = [e.float() for e in ends]
    for values, what in zip(ends, ("input", "baseline")):
        _check_finite(s, rows, values, f"the model's target output at the {what}")
    if mode.substituted:
        scale = ends[0].abs().clamp_min(1)
        if ((out.detach() - ends[0]).abs() > 256 * torch.finfo(out.dtype).eps * scale).any():
            raise NoDeepLiftRule(
                "the model uses a detached copy of the attributed signal (Tensor.detach) that "
                "changes its output: DeepLIFT has no rule for that (a softmax's max shift, "
                "which cancels, is fine)")
    return ends[0], ends[1]


def runs_in_half(model: nn.Module) -> bool:
    """Whether any floating-point parameter or buffer of ``model`` is float16 or bfloat16."""
    return any(t.dtype in (torch.float16, torch.bfloat16)
               for t in (*model.parameters(), *model.buffers()))


def _check_finite(s: Setup, rows: Tensor, values: Tensor, what: str) -> None:
    """Raise ``NonFiniteOutput`` naming the first example whose ``values`` (one row per entry
    of ``rows``) hold a NaN or inf: IG's contract, so no method returns NaN silently."""
    i = first_nonfinite(values)
    if i is not None:
        row = int(rows[i])
        raise NonFiniteOutput(f"DeepLIFT: {what} is not finite for example {row % s.b} "
                              f"(baseline {row // s.b}): check the model, its dtype and the "
                              f"baselines")


def layer_pass(s: Setup, layers: list[tuple[str, nn.Module]], nonlinearity: str,
               fallback: bool, batch_size: int | str, use_input: bool = False
               ) -> tuple[list[Tensor], list[Tensor], Tensor, Tensor, Counter, list[Tensor]]:
    """DeepLIFT to the activations of ``layers`` (each must run once per forward), whose
    values are cut from the graph below them: ``(differences, multipliers, F(x), F(x'),
    rule counts, activations at the inputs)``, one difference ``(n, *shape)`` and one
    multiplier per layer, ``(n, *shape)`` or, for a target with ``T`` outputs per row,
    ``(n, T, *shape)`` (one backward per output on the same two forwards). Cost: per chunk
    two forwards and ``T`` backwards to the layers."""
    def cut(t: Tensor) -> Tensor:
        if not isinstance(t, Tensor) or not t.is_floating_point():
            raise TypeError("a tapped layer's activation is not a floating-point tensor")
        return t.detach().requires_grad_(True)

    # differences, multipliers, outputs, references, activations at the inputs
    parts: list[list] = [[], [], [], [], []]
    counts: Counter = Counter()
    widen = runs_in_half(s.call.model)
    with guarded(s.call.model), torch.enable_grad(), \
            tap_layers(s.call.model, [Tap(name, use_input, cut) for name, _ in layers]
                       ) as taps:
        for rows in _chunks(s, batch_size):
            mode = DeepLiftMode(nonlinearity, fallback, widen=widen)
            for t in taps:
                t.reset()
            out, out_ref, acts_ref = _forward(s, mode, rows, s.x[rows], s.baseline[rows], taps)
            acts = [t.check() for t in taps]
            check_reached(out, [name for name, _ in layers])
            grads = per_output_grads(out, acts) if out.dim() == 2 else torch.autograd.grad(
                out.sum(), acts, allow_unused=True, materialize_grads=True)
            for g in grads:
                _check_finite(s, rows, g, "a multiplier")
            parts[0].append([a.detach() - r for a, r in zip(acts, acts_ref)])
            parts[1].append(list(grads))
            parts[4].append([a.detach() for a in acts])
            for k, value in zip((2, 3), _model_ends(s, mode, rows, out, out_ref)):
                parts[k].append(value)
            counts.update(mode.counts)
    diffs, mults, acts = ([torch.cat(c) for c in zip(*chunks)] for chunks in
                          (parts[0], parts[1], parts[4]))
    return diffs, mults, torch.cat(parts[2]), torch.cat(parts[3]), counts, acts


def _arity(f: Callable) -> int:
    """How many of (multipliers, inputs, baselines) ``f`` takes (Captum's convention)."""
    params = inspect.signature(f).parameters.values()
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return 3
    n = sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)
    if not 1 <= n <= 3:
        raise TypeError(f"custom_attribution_func takes 1 to 3 arguments (multipliers, inputs, "
                        f"baselines), not {n}")
    return n


def _chunks(s: Setup, batch_size: int | str) -> Iterator[Tensor]:
    """Row indices per chunk: DeepLIFT's rules are per example, so chunks are independent.
    ``"auto"``: a third of the path methods' memory budget per chunk, since a chunk holds two
    forwards and the rules' saved tensors (batches of up to ``SMALL`` rows: one chunk). An
    empty batch gives one empty chunk."""
    n = len(s.x)
    # Sizing "auto" costs a forward of one row; up to SMALL rows run as one chunk unmeasured.
    bs = max(n, 1) if batch_size == "auto" and n <= SMALL else \
        ChunkSize(s.call, s.x, batch_size, MEMORY_BUDGET // 3)(n)
    for start in range(0, max(n, 1), bs):
        yield torch.arange(start, min(start + bs, n), device=s.x.device)


def _result(s: Setup, diff: Tensor, multipliers: Tensor, out: Tensor, out_ref: Tensor,
            nonlinearity: str, counts: Counter, multiply_by_inputs: bool,
            packer: Packer | None = None, custom: Callable | None = None,
            ends: tuple[Tensor, Tensor] | None = None, **info) -> Attribution:
    """Average over baselines; delta = sum of contributions - (F(x) - F(x')), and in
    ``info["deltas"]`` the same per (example, baseline), ``(B, K)``. ``packer``: how the
    rows are laid out (default the inputs', ``s.packer``; a layer's tensors for layers).
    ``custom``: the user's ``f(multipliers, inputs, baselines)`` (tuples, Captum's
    convention; one to three arguments) replaces ``(x - x') M``, and ``delta`` is its sum's
    gap; ``ends``: the rows at the inputs and at the baselines."""
    packer = packer or s.packer
    if custom is None:
        rows = diff * multipliers
    else:
        assert ends is not None  # given with custom
        at_x, at_ref = ends
        split = packer.unpack
        got = custom(*[split(t) for t in (multipliers, at_x, at_ref)][:_arity(custom)])
        got = got if isinstance(got, tuple) else (got,)
        want = split(multipliers)
        shapes = [tuple(g.shape) if isinstance(g, Tensor) else type(g).__name__ for g in got]
        if shapes != [tuple(w.shape) for w in want]:
            raise ValueError(f"custom_attribution_func must return tensors shaped like the "
                             f"multipliers {[tuple(w.shape) for w in want]}, got {shapes}")
        rows = packer.pack(list(got))
    out_rows = out.detach() - out_ref
    attr = s.mean(rows)
    delta = attr.flatten(1).sum(1) - s.mean(out_rows)
    each = (rows.flatten(1).sum(1) - out_rows).reshape(s.k, s.b).T
    shown = attr if multiply_by_inputs else s.mean(multipliers)
    return Attribution(packer.structure(shown), delta,
                       info={"nonlinearity": nonlinearity, "rules": dict(counts),
                             "deltas": each, "output_delta": s.mean(out_rows), **info})


class DeepLift(ConvergenceDelta):
    """DeepLIFT contributions of the input features.

    ``nonlinearity``: the rule for nonlinearities, "rescale" or "revealcancel" (named so that
    ``rule`` keeps one meaning across pathattr: a quadrature rule). ``allow_gradient_fallback``:
    use the plain gradient (with a warning) through operations that have no DeepLIFT rule,
    instead of raising
    ``NoDeepLiftRule``. Several baselines (``baselines.Several``) give DeepLIFT-SHAP: the
    contributions averaged over the baselines. ``multiply_by_inputs=False`` returns the
    multipliers ``M`` instead of ``(x - x') M``.
    """

    def __init__(self, model: nn.Module, nonlinearity: Nonlinearity = "rescale",
                 allow_gradient_fallback: bool = False, multiply_by_inputs: bool = True):
        _check(model, nonlinearity)
        self.model, self.nonlinearity = model, nonlinearity
        self.fallback = allow_gradient_fallback
        self.multiply_by_inputs = multiply_by_inputs

    def attribute(self, x: Inputs, baselines: BaselineSpec | tuple = None,
                  target: TargetSpec = None, *, batch_size: int | Literal["auto"] = "auto",
                  additional_forward_args: tuple | None = None,
                  forward_kwargs: dict | None = None, output: OutputSpec = None,
                  custom_attribution_func: Callable | None = None) -> Attribution:
        """Return contributions (shape of ``x``) with ``delta`` per example.
        ``custom_attribution_func(multipliers, inputs, baselines)`` (tuples; Captum's
        convention) computes the attributions from the multipliers instead of
        ``(x - x') M``; ``delta`` is then the gap of what it returns.

        Cost: two forwards and one backward on ``K B`` rows (K baselines, B examples), in
        chunks of ``batch_size`` rows, plus a few elementwise passes per nonlinearity
        (RevealCancel: one extra linear map forward and backward at each site).
        """
        s = self.prepare(x, baselines, target, additional_forward_args, forward_kwargs, output)
        grads, outs, refs, counts = [], [], [], Counter()
        widen = runs_in_half(self.model)
        with guarded(self.model), torch.enable_grad():
            for rows in _chunks(s, batch_size):
                mode = DeepLiftMode(self.nonlinearity, self.fallback, widen=widen)
                x_rows, ref_rows = s.x[rows].detach(), s.baseline[rows].detach()
                if widen:
                    x_rows, ref_rows = x_rows.float(), ref_rows.float()
                inputs = x_rows.requires_grad_(True)
                out, out_ref, _ = _forward(s, mode, rows, inputs, ref_rows.requires_grad_(True))
                (grad,) = torch.autograd.grad(out.sum(), inputs)
                _check_finite(s, rows, grad, "a multiplier")
                grads.append(grad)
                f_x, f_ref = _model_ends(s, mode, rows, out, out_ref)
                outs.append(f_x)
                refs.append(f_ref)
                counts.update(mode.counts)
        return _result(s, s.x - s.baseline, torch.cat(grads), torch.cat(outs), torch.cat(refs),
                       self.nonlinearity, counts, self.multiply_by_inputs,
                       custom=custom_attribution_func, ends=(s.x, s.baseline))


class LayerDeepLift(ConvergenceDelta):
    """DeepLIFT contributions of a layer's neurons (its output, or its input).

    The layer's activations are treated as the inputs of the network above it, so no graph is
    built below the layer; under RevealCancel a nonlinearity fed by a linear layer *below* the
    tapped layer uses Rescale (its terms are not visible).
    """

    def __init__(self, model: nn.Module, layer: LayerSpec, nonlinearity: Nonlinearity = "rescale",
                 allow_gradient_fallback: bool = False, multiply_by_inputs: bool = True):
        _check(model, nonlinearity)
        resolve_layer(model, layer)
        self.model, self.layer, self.nonlinearity = model, layer, nonlinearity
        self.fallback, self.multiply_by_inputs = allow_gradient_fallback, multiply_by_inputs

    def attribute(self, x: Inputs, baselines: BaselineSpec | tuple = None,
                  target: TargetSpec = None, *, attribute_to_layer_input: bool = False,
                  batch_size: int | Literal["auto"] = "auto",
                  additional_forward_args: tuple | None = None,
                  forward_kwargs: dict | None = None, output: OutputSpec = None,
                  custom_attribution_func: Callable | None = None) -> Attribution:
        """Return contributions shaped like the layer's activation per example, with ``delta``.
        ``custom_attribution_func``: as in ``DeepLift``, on the layer's multipliers and its
        activations at the inputs and the baselines.

        ``x`` may be integer (token ids, with id baselines such as a pad id).
        A layer whose output (or, with ``attribute_to_layer_input``, whose positional
        inputs) is several tensors, named without an element, is attributed as a whole:
        ``attributions`` is a tuple with one tensor per floating-point element and ``delta``
        the gap of them all together (Captum's convention; name one element, ``"m[0]"``, for
        that tensor alone).
        Raises if the layer runs zero or several times in one forward. Cost: two forwards on
        ``K B`` rows (K baselines, B examples), in chunks of ``batch_size`` rows, and one
        backward down to the layer; a layer named without an element one more forward of one
        row (to see its structure).
        """
        s = self.prepare(x, baselines, target, additional_forward_args, forward_kwargs,
                         output, integers=True)
        name, module = resolve_layer(self.model, self.layer)
        rows = torch.zeros(min(len(s.x), 1), dtype=torch.long, device=s.x.device)
        names = tensor_elements(name, module, attribute_to_layer_input,
                                lambda: s.call(s.x[:1], rows)) if len(s.x) else [name]
        diffs, grads, out, out_ref, counts, acts = layer_pass(
            s, [(n, module) for n in names], self.nonlinearity, self.fallback, batch_size,
            attribute_to_layer_input)
        packer = Packer.of(diffs, single=len(names) == 1)
        diff, grad, act = (packer.pack(t) for t in (diffs, grads, acts))
        return _result(s, diff, grad, out, out_ref, self.nonlinearity, counts,
                       self.multiply_by_inputs, packer, custom=custom_attribution_func,
                       ends=(act, act - diff), layer=name if len(names) == 1 else names)


def on_layers(s: Setup, layers: list[tuple[str, nn.Module]], options: dict,
              batch_size: int | str, reduce: Callable[[Tensor], Tensor] | None = None
              ) -> Integral:
    """DeepLIFT (``options["nonlinearity"]``, default Rescale) to the activations of
    ``layers`` for a target with ``T`` outputs per row (``SequenceAttribution``'s tokens):
    per layer the multipliers times ``y(x) - y(x')``, ``(B, T, *shape)``, or what ``reduce``
    keeps of it; ``delta`` is summation-to-delta's gap ``(B, T)``. Cost: two forwards and
    ``T`` backwards per row."""
    diffs, grads, out, out_ref, counts, _ = layer_pass(
        s, layers, options.get("nonlinearity", "rescale"), False, batch_size)
    acc = accumulation_dtype(grads[0].dtype)  # float32 sums for a half-precision model
    parts = [g.to(acc) * d[:, None].to(acc) for g, d in zip(grads, diffs)]
    if reduce is not None:
        parts = [reduce(p) for p in parts]
    out_delta = (out - out_ref).to(acc)
    return Integral([s.mean(p) for p in parts], s.mean(totals(parts) - out_delta), None, None,
                    {"rules": dict(counts), "output_delta": s.mean(out_delta)}, layer=True)
