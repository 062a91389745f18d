"""How a model is called at path points: several inputs, forward arguments, structured outputs.

Inputs follow Captum: one tensor, or a tuple of tensors sharing the batch dimension. A tuple
(and a 1-D ``(B,)`` input) is *packed* into one ``(B, N)`` tensor, each input flattened and laid
side by side, so that the path engine and every method see a single tensor; the model receives
the inputs unpacked (views of the packed rows). A single tensor of two or more dimensions is
passed as it is (its memory format matters to conv nets).

A path point belongs to one example, and points of several examples share a chunk, so a forward
argument (``additional_forward_args``, ``forward_kwargs``) that holds one entry per example must
be indexed with the example of each row. Say which with ``per_example(t)`` (always indexed; its
first dimension must be the batch size) or ``shared(v)`` (passed unchanged, whatever its shape:
a graph's ``edge_index (2, E)`` with a batch of two). An unmarked argument follows Captum's
convention: a tensor whose first dimension is the batch size is per example, anything else is
shared. Row ``r`` of any evaluated batch belongs to example ``r % B``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

#: What ``output=`` accepts: a key of a mapping output, an index of a tuple output, a callable.
OutputSpec = str | int | Callable[[Any], Tensor] | None


def choose_output(out: object, output: OutputSpec = None) -> Tensor:
    """The tensor to explain from a model's return value.

    Default: a tensor as it is; a mapping or HuggingFace ``ModelOutput`` its ``logits``; a tuple
    or list its first element. ``output`` picks another: a key, an index or a callable.
    """
    if callable(output):
        out = output(out)
    elif isinstance(output, str):
        if not isinstance(out, Mapping) or output not in out:
            keys = list(out.keys()) if isinstance(out, Mapping) else None
            raise KeyError(f"output={output!r}: the model returned "
                           + (f"a mapping with keys {keys}" if keys is not None
                              else type(out).__name__))
        out = out[output]
    elif isinstance(output, int) and not isinstance(output, bool):
        if not isinstance(out, (tuple, list)) or not -len(out) <= output < len(out):
            raise IndexError(f"output={output}: the model returned {type(out).__name__}"
                             + (f" of length {len(out)}" if isinstance(out, (tuple, list))
                                else ""))
        out = out[output]
    elif output is not None:
        raise TypeError(f"output must be a key, an index or a callable, got {output!r}")
    if isinstance(out, Tensor):
        return out
    if isinstance(out, Mapping):
        if "logits" in out:
            return choose_output(out["logits"])
        raise KeyError(f"the model returned a mapping without 'logits' (keys: {list(out)}); "
                       f"choose one with output=KEY")
    if isinstance(out, (tuple, list)) and out:
        return choose_output(out[0])
    raise TypeError(f"the model returned {type(out).__name__}, not a tensor; choose what to "
                    f"explain with output=KEY, INDEX or a callable")


@dataclass
class Packer:
    """Lays inputs side by side as one ``(B, N)`` tensor and takes them apart again.

    ``shapes``: each input's shape per example. ``packed`` is False for a single input of two
    or more dimensions, which travels unchanged.
    """

    shapes: list[tuple[int, ...]]
    single: bool
    packed: bool
    sizes: list[int] = field(init=False)

    def __post_init__(self):
        self.sizes = [int(torch.Size(s).numel()) for s in self.shapes]

    @classmethod
    def of(cls, xs: Sequence[Tensor], single: bool) -> Packer:
        shapes = [tuple(t.shape[1:]) for t in xs]
        return cls(shapes, single, packed=not (single and len(shapes[0]) >= 1))

    def pack(self, xs: Sequence[Tensor]) -> Tensor:
        if not self.packed:
            return xs[0]
        return torch.cat([t.reshape(t.shape[0], t[0:0].shape[1:].numel()) for t in xs], 1)

    def unpack(self, flat: Tensor) -> tuple[Tensor, ...]:
        """Each input's rows of ``flat`` (``(n, N)``), shaped back. Views, no copies."""
        if not self.packed:
            return (flat,)
        out, start = [], 0
        for shape, size in zip(self.shapes, self.sizes):
            out.append(flat[:, start:start + size].reshape(flat.shape[0], *shape))
            start += size
        return tuple(out)

    def structure(self, flat: Tensor) -> Tensor | tuple[Tensor, ...]:
        """``flat`` given back in the user's structure: a tensor, or a tuple of tensors."""
        parts = self.unpack(flat)
        return parts[0] if self.single else parts


@dataclass(frozen=True)
class Shared:
    """A forward argument passed unchanged to every chunk (see ``shared``)."""

    value: Any


@dataclass(frozen=True)
class PerExample:
    """A forward argument with one entry per example along its first dimension."""

    value: Tensor


def shared(value: Any) -> Shared:
    """Mark a forward argument as the same for every example: it is never indexed per row,
    whatever its shape. Returns the marker; the model receives ``value``."""
    return Shared(value)


def per_example(value: Tensor) -> PerExample:
    """Mark a tensor forward argument as one entry per example (first dimension = batch size):
    each evaluated row receives its example's entry. Returns the marker; the model receives the
    indexed tensor."""
    if not isinstance(value, Tensor) or value.dim() == 0:
        raise TypeError(f"per_example() takes a tensor with a batch dimension, got "
                        f"{type(value).__name__}" + (" (a scalar)" if isinstance(value, Tensor)
                                                     else ""))
    return PerExample(value)


def _check_marked(v: object, name: str, n: int) -> None:
    if isinstance(v, PerExample) and v.value.shape[0] != n:
        raise ValueError(f"{name}: per_example() tensor has {v.value.shape[0]} entries along "
                         f"its first dimension, expected the batch size {n}")


def _index_batch(v: object, ex: Tensor, n: int) -> object:
    if isinstance(v, Shared):
        return v.value
    if isinstance(v, PerExample):
        return v.value.index_select(0, ex.to(v.value.device))
    if isinstance(v, Tensor) and v.dim() >= 1 and v.shape[0] == n:
        return v.index_select(0, ex.to(v.device))
    return v


class ModelCall:
    """The model as the engine calls it: ``call(points, rows) -> the tensor to explain``.

    ``points``: packed inputs, one row per path point; ``rows``: each row's position in the
    batch of ``n`` examples (repeated per baseline), default ``0..len(points)-1``.
    """

    def __init__(self, model: Callable, packer: Packer, n: int,
                 additional_forward_args: tuple | None = None,
                 forward_kwargs: Mapping[str, Any] | None = None, output: OutputSpec = None):
        if additional_forward_args is not None and not isinstance(additional_forward_args,
                                                                  tuple):
            additional_forward_args = (additional_forward_args,)
        if forward_kwargs is not None and not isinstance(forward_kwargs, Mapping):
            raise TypeError(f"forward_kwargs must be a dict of keyword arguments, got "
                            f"{type(forward_kwargs).__name__}")
        self.model, self.packer, self.n, self.output = eager(model), packer, n, output
        self.args = additional_forward_args or ()
        self.kwargs = dict(forward_kwargs or {})
        for i, a in enumerate(self.args):
            _check_marked(a, f"additional_forward_args[{i}]", n)
        for k, v in self.kwargs.items():
            _check_marked(v, f"forward_kwargs[{k!r}]", n)
        if "use_cache" not in self.kwargs and _caches(self.model):
            # a cache is state for the next call, not part of the explained function; writing
            # it (Mamba's ``copy_`` into its cache) has no DeepLIFT rule and costs memory
            self.kwargs["use_cache"] = False

    def __call__(self, points: Tensor, rows: Tensor | None = None) -> Tensor:
        n_rows = points.shape[0]
        args, kwargs = self.args, self.kwargs
        if args or kwargs:
            if rows is None:
                rows = torch.arange(n_rows, device=points.device)
            ex = rows % max(self.n, 1)
            args = tuple(_index_batch(a, ex, self.n) for a in args)
            kwargs = {k: _index_batch(v, ex, self.n) for k, v in kwargs.items()}
        try:
            out = self.model(*self.packer.unpack(points), *args, **kwargs)
        except (RuntimeError, ValueError, TypeError, IndexError) as e:
            if type(e) not in (RuntimeError, ValueError, TypeError, IndexError):
                raise  # ours, or a library's own type: its message stands
            raise type(e)(f"the model failed on what pathattr passed it "
                          f"({describe(self.packer.unpack(points), args, kwargs)}): {e}") from e
        return choose_output(out, self.output)


def eager(model: Any) -> Any:
    """The module a ``torch.compile``d model wraps (``_orig_mod``), else ``model``.

    Attribution needs what compiled graphs hide: forward hooks on inner layers and a
    ``TorchFunctionMode`` seeing every op (DeepLIFT). The original module computes the same
    function, so pathattr runs it eagerly; the compiled wrapper is left as it came."""
    inner = getattr(model, "_orig_mod", None)
    return inner if isinstance(model, nn.Module) and isinstance(inner, nn.Module) else model


def _caches(model: Any) -> bool:
    """Whether ``model`` (a HuggingFace model) takes ``use_cache`` and its config turns it on."""
    if not getattr(getattr(model, "config", None), "use_cache", False):
        return False
    try:
        return "use_cache" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError, AttributeError):
        return False


def describe(inputs: Sequence[Tensor], args: Sequence, kwargs: Mapping) -> str:
    """Shape, dtype and device of what a model call received, for error messages."""
    def one(v: object) -> str:
        if isinstance(v, Tensor):
            return f"tensor {tuple(v.shape)} {str(v.dtype).replace('torch.', '')} {v.device}"
        return type(v).__name__
    parts = [f"input {i}: {one(t)}" for i, t in enumerate(inputs)]
    parts += [f"arg {i}: {one(a)}" for i, a in enumerate(args)]
    parts += [f"{k}: {one(v)}" for k, v in kwargs.items()]
    return "; ".join(parts)
