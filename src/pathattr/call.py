"""The call protocol every method shares: ``setup`` validates, places and packs the inputs and
expands the baselines into a ``Setup``, whose engine evaluates the path.

Every method's ``attribute`` calls ``setup`` and reads its arithmetic off the ``Setup``; the
conventions that follow live here once:

- ``x`` is a tensor or a tuple of tensors sharing the batch dimension (``forward.Packer``);
  attributions come back in the same structure.
- ``baselines`` is one spec for every input, or a tuple with one spec per input.
- Inputs move to the model's device; floating inputs are cast to the dtype of the model's
  floating parameters (a float64 input to a float32 model is explained in float32), so the
  result has the model's dtype. The user's tensors are detached, never modified.
- Integer inputs (token ids) are accepted by methods whose path lives in a layer's space.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .baselines import BaselineSpec, make_baselines
from .engine import ChunkSize, LayerPath, PathEngine, PointEvaluator, guarded
from .forward import ModelCall, OutputSpec, Packer
from .layers import LayerSpec, resolve_layer, tensor_elements
from .targets import Target, TargetSpec, resolve_target
from .validate import check_eval_mode, check_repeatable, check_tensor

Inputs = Tensor | tuple[Tensor, ...]
#: Moves a layer activation at the input end of the path (``(B, *S) -> (B, *S)``).
LayerNoise = Callable[[Tensor], Tensor]


@dataclass
class Setup:
    """Inputs repeated once per baseline: rows ``k * B + b`` pair example b with baseline k."""

    x: Tensor          # (K*B, *S), packed
    baseline: Tensor   # (K*B, *S)
    target: Target     # for the B examples; row r belongs to example r % B
    call: ModelCall
    packer: Packer
    k: int
    b: int

    def engine(self, batch_size: int | str, channels_last: bool | str = "auto") -> PathEngine:
        """The engine on the straight paths from ``baseline`` to ``x``."""
        return PathEngine(self.call, self.x, self.baseline, self.target, batch_size,
                          channels_last)

    def evaluator(self, batch_size: int | str) -> PointEvaluator:
        """Evaluation at arbitrary points of this call, in chunks sized once from ``x``."""
        return PointEvaluator(self.call, ChunkSize(self.call, self.x, batch_size))

    def mean(self, t: Tensor) -> Tensor:
        """Average per-row results over the K baselines: ``(K*B, ...) -> (B, ...)``."""
        return t.reshape(self.k, self.b, *t.shape[1:]).mean(0)

    def evaluations(self, per_row: int | Sequence[int] | Tensor) -> Tensor:
        """``info["gradient_evaluations"]``, one type for every method: ``(B,)`` int64, each
        example's gradient evaluations over all its baselines (``per_row``: a count for
        every row, or one per row ``k * B + b``)."""
        rows = torch.as_tensor(per_row, dtype=torch.int64).expand(self.k * self.b)
        return rows.reshape(self.k, self.b).sum(0)

    def structure(self, attr: Tensor) -> Tensor | tuple[Tensor, ...]:
        """Packed ``(B, *S)`` attributions in the structure of the user's ``x``."""
        return self.packer.structure(attr)


class Explainer:
    """What every method class shares: the model it explains and the prepared call.

    Each method keeps its own ``attribute`` with its keywords spelled out (IDEs and
    ``registry`` read them); ``prepare`` is the first line of each.
    """

    def __init__(self, model: Any):
        self.model = model

    def prepare(self, x: Inputs, baselines: BaselineSpec | tuple, target: TargetSpec,
                additional_forward_args: tuple | None = None,
                forward_kwargs: Mapping | None = None, output: Any = None,
                integers: bool = False) -> Setup:
        """``setup`` on this method's model (see there)."""
        return setup(self.model, x, baselines, target, additional_forward_args, forward_kwargs,
                     output, integers=integers)


class ConvergenceDelta(Explainer):
    """``compute_convergence_delta`` on a method whose attributions sum to ``F(x) - F(x')``."""

    def compute_convergence_delta(self, attributions: Tensor | tuple[Tensor, ...], start_point,
                                  end_point, target: TargetSpec = None,
                                  additional_forward_args: tuple | None = None, *,
                                  forward_kwargs: Mapping[str, Any] | None = None,
                                  output: OutputSpec = None) -> Tensor:
        """``sum(attributions) - (F(end_point) - F(start_point))`` per example: see
        ``pathattr.metrics.convergence_delta``. Cost: two forwards."""
        return convergence_delta(self.model, attributions, start_point, end_point, target,
                                 additional_forward_args, forward_kwargs=forward_kwargs,
                                 output=output)


def model_device_dtype(model: object) -> tuple[torch.device | None, torch.dtype | None]:
    """The device and floating dtype of the model's parameters (None for plain functions)."""
    if isinstance(model, nn.Module):
        for p in model.parameters():
            if p.is_floating_point():
                return p.device, p.dtype
        for p in model.parameters():
            return p.device, None
    return None, None


def _inputs(x: object, integers: bool) -> tuple[list[Tensor], bool]:
    single = isinstance(x, Tensor)
    xs = [x] if single else list(x) if isinstance(x, tuple) else None
    if not xs:
        raise TypeError(f"x must be a tensor or a non-empty tuple of tensors, got "
                        f"{type(x).__name__}")
    for i, t in enumerate(xs):
        name = "x" if single else f"x[{i}]"
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() == 0:
            raise ValueError(f"{name} must have a batch dimension, got a scalar")
        if t.shape[0] != xs[0].shape[0]:
            raise ValueError(f"{name} has batch size {t.shape[0]}, but x[0] has "
                             f"{xs[0].shape[0]}: the inputs must share the batch dimension")
        if t.is_floating_point():
            check_tensor(t, name)
        elif t.dtype == torch.bool or t.is_complex() or not integers:
            raise TypeError(
                f"{name} must be a floating-point tensor (attribution needs gradients), got "
                f"{t.dtype}; convert it with .float(), pass it in additional_forward_args if "
                f"it is not attributed, or, for token ids, attribute to the embedding layer "
                f"(LayerIntegratedGradients, LayerConductance, LayerDeepLift)")
    kinds = {t.is_floating_point() for t in xs}
    if len(kinds) > 1:
        raise TypeError("x mixes integer and floating-point tensors; attribute one kind and pass "
                        "the others in additional_forward_args")
    return xs, single


def setup(model: Any, x: Inputs, baselines: BaselineSpec | tuple = None,
          target: TargetSpec | Target = None, additional_forward_args: tuple | None = None,
          forward_kwargs: Mapping[str, Any] | None = None, output: OutputSpec = None, *,
          integers: bool = False) -> Setup:
    """Validate ``x``, move it to the model's device and dtype, pack it, expand baselines and
    resolve targets (see the module docstring). Cost: elementwise passes over the inputs."""
    check_eval_mode(model)
    xs, single = _inputs(x, integers)
    device, dtype = model_device_dtype(model)
    xs = [t.detach().to(device=device or t.device,
                        dtype=(dtype or t.dtype) if t.is_floating_point() else t.dtype)
          for t in xs]
    if len({t.dtype for t in xs}) > 1:
        raise TypeError(f"the inputs of x have different dtypes {[t.dtype for t in xs]}")
    if isinstance(baselines, tuple) and not single:
        if len(baselines) != len(xs):
            raise ValueError(f"baselines is a tuple of {len(baselines)}, but x has {len(xs)} "
                             f"inputs: give one baseline per input, or one for all")
        specs: list[Any] = list(baselines)
    else:
        specs = [baselines] * len(xs)
    bases = []
    for i, (t, spec) in enumerate(zip(xs, specs)):
        try:
            bases.append(make_baselines(t, spec).detach())
        except (TypeError, ValueError) as e:
            if single:
                raise
            raise type(e)(f"baselines of x[{i}]: {e}") from e
    k = bases[0].shape[0]
    if any(bb.shape[0] != k for bb in bases):
        raise ValueError(f"the inputs have different numbers of baselines "
                         f"{[bb.shape[0] for bb in bases]}")
    for i, t in enumerate(xs):
        if t.dim() > 1 and t[0:0].shape[1:].numel() == 0:
            name = "x" if single else f"x[{i}]"
            raise ValueError(f"{name} has shape {tuple(t.shape)}: no features to attribute to")
    packer = Packer.of(xs, single)
    b = xs[0].shape[0]
    xp = packer.pack(xs)
    base = torch.stack([packer.pack([bb[j] for bb in bases]) for j in range(k)])
    xk = xp.unsqueeze(0).expand(k, *xp.shape).reshape(k * b, *xp.shape[1:])
    call = ModelCall(model, packer, b, additional_forward_args, forward_kwargs, output)
    if b:
        check_repeatable(model, lambda: call(xp[:2]))
    return Setup(xk, base.reshape(k * b, *xp.shape[1:]), resolve_target(target, b, xp.device),
                 call, packer, k, b)


def embedding_path(engine: PathEngine, path_layer: LayerSpec | None,
                   layer_noise: LayerNoise | None = None) -> Tensor:
    """Put the engine's path in ``path_layer``'s space when one is given or the inputs are
    integer (token ids; default there: the model's ``get_input_embeddings()``, as HuggingFace
    models have). ``layer_noise`` moves the path's end (SmoothGrad in the layer's space).
    Returns ``x - x'`` in the path's space.
    Cost: two forward passes per row when the path moves to a layer."""
    if path_layer is None and engine.x.is_floating_point():
        if layer_noise is not None:
            raise ValueError("layer_noise moves the end of a path in a layer's space: give "
                             "path_layer= (or token ids), or put the noise on the input")
        return engine.diff
    if path_layer is None:
        get = getattr(engine.model, "get_input_embeddings", None)
        found = get() if callable(get) else None
        if not isinstance(found, nn.Module):
            raise TypeError("x holds integer ids, which have no straight path: give "
                            "path_layer= (the layer whose output the path runs through, e.g. "
                            "the token embeddings)")
        path_layer = found
    name, _ = resolve_layer(engine.model, path_layer)
    layer_path(engine, [name], layer_noise=layer_noise, what="path_layer")
    return engine.path_diff


def layer_path(engine: PathEngine, layers: Sequence[str | nn.Module], use_input: bool = False,
               layer_noise: LayerNoise | None = None, what: str = "layer"
               ) -> tuple[Tensor, Tensor]:
    """Put the engine's path in the space of ``layers``' outputs (inputs with ``use_input``):
    from each layer's activation at the baseline to its activation at ``x``, moved by
    ``layer_noise``. ``layers`` are resolved names (an element or call, ``@K``, is kept) or
    modules. Returns ``F(x)`` and ``F(x')`` from the plain forwards (``F(x)`` is not the
    path's end when noise moves it). Raises ``TypeError`` for a layer whose activation is not
    floating-point (``what`` names the argument). Cost: four forwards per row (the ends, and
    ``use_layer_path``'s check of the path's start)."""
    f1, f0, ends = engine.ends(list(layers), use_input)
    side = "input" if use_input else "output"
    for name, (start, _) in zip(layers, ends):
        if not start.is_floating_point():
            raise TypeError(f"{what} {name!r} {side} is {start.dtype}; choose a layer with a "
                            f"floating-point {side}")
    engine.use_layer_path(LayerPath(list(layers), [a for a, _ in ends],
                                    [noisy(b, layer_noise) for _, b in ends], use_input), f1, f0)
    return f1, f0


def layer_tensors(model: nn.Module, layers: Sequence[LayerSpec], use_input: bool,
                  s: Setup) -> list[list[str]]:
    """Per layer, the names to tap: itself, or one name per floating tensor of an output (or
    of positional inputs) of several (``m[0]``, ``m[1]``), so that such a layer is attributed
    as a whole (Captum's convention); an element that is not batch first is refused. Cost: one
    forward of the first two examples per layer (``layers.tensor_elements``)."""
    rows = torch.arange(min(len(s.x), 2), device=s.x.device)  # two, to see the batch dim
    return [tensor_elements(name, module, use_input, lambda: s.call(s.x[rows], rows), len(rows))
            if len(s.x) else [name]
            for name, module in (resolve_layer(model, spec) for spec in layers)]


def noisy(end: Tensor, layer_noise: LayerNoise | None) -> Tensor:
    """``end`` moved by ``layer_noise`` (checked to keep its shape and stay finite)."""
    if layer_noise is None:
        return end
    out = layer_noise(end)
    if not isinstance(out, Tensor) or out.shape != end.shape or not torch.isfinite(out).all():
        raise ValueError(f"layer_noise must return a finite tensor of shape "
                         f"{tuple(end.shape)}")
    return out


def convergence_delta(model, attributions: Tensor | tuple[Tensor, ...], start_point,
                      end_point, target=None, additional_forward_args: tuple | None = None, *,
                      forward_kwargs: Mapping | None = None, output=None) -> Tensor:
    """``sum(attributions) - (F(end_point) - F(start_point))`` per example, ``(B,)``: the
    completeness gap of attributions computed elsewhere or post-processed (Captum's
    ``compute_convergence_delta``). ``end_point`` is the input, ``start_point`` its baseline (a
    number, a tensor broadcast to it, or one per input of a tuple); ``target``,
    ``additional_forward_args``, ``forward_kwargs`` and ``output`` as in ``attribute``.
    Attributions may be an input's or a layer's: only their sum per example is read. Cost:
    two forwards, in float32 or wider. Raises on several baselines (their gap is not one
    number per example) and on attributions with another batch size."""
    s = setup(model, end_point, start_point, target, additional_forward_args, forward_kwargs,
              output, integers=True)
    if s.k != 1:
        raise ValueError(f"start_point gives {s.k} baselines per example; give one")
    parts = attributions if isinstance(attributions, tuple) else (attributions,)
    if not parts or not all(isinstance(a, Tensor) for a in parts):
        raise TypeError("attributions must be a tensor or a tuple of tensors")
    if any(a.dim() == 0 or a.shape[0] != s.b for a in parts):
        raise ValueError(f"attributions have batch sizes {[tuple(a.shape) for a in parts]}, "
                         f"end_point {s.b} examples")
    wide = torch.promote_types(parts[0].dtype, torch.float32)
    total = torch.stack([a.detach().reshape(s.b, -1).to(wide).sum(1) for a in parts]).sum(0)
    rows = torch.arange(s.b, device=s.x.device)
    with guarded(model), torch.no_grad():
        f1, f0 = (s.target.select(s.call(t, rows), rows).to(wide) for t in (s.x, s.baseline))
    return total.to(f1.device) - (f1 - f0)
