"""Find a layer by dotted name, and read or replace its activation with scoped hooks.

A layer whose output (or input) is a tuple, list or mapping — ``nn.LSTM``, ``nn.GRU``,
``nn.MultiheadAttention``, HuggingFace blocks — is tapped by naming the element after the
module's name: ``"rnn[0]"`` (the LSTM's output sequence), ``"encoder.layer.0.attention[0]"``,
``"block['hidden_states']"``; indices may chain, ``"m[1][0]"``. With
``attribute_to_layer_input`` the element indexes the positional inputs (default ``[0]``).

A module that runs several times in one forward (a shared embedding for encoder and decoder,
one activation module called twice) is tapped at one of its calls with ``@K`` (0-based):
``"shared@1"`` is the second call; without it such a module is refused as ambiguous.

A model whose rows are not the first dimension of its layers — a graph network holds the nodes
of all graphs in one ``(N, d)`` tensor — declares its ``RowLayout`` for the duration of its
forward (``row_layout``); a tapped activation laid out by nodes (or edges) is then seen padded,
one row per evaluated example, ``(rows, most nodes, d)``, and put back for the layers after it.
"""

from __future__ import annotations

import copy
import difflib
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

LayerSpec = str | nn.Module
_ELEMENT = re.compile(r"\[\s*(-?\d+|'[^']*'|\"[^\"]*\")\s*\]")
_CALL = re.compile(r"^(.*)@(\d+)$")


def split_call(name: str) -> tuple[str, int | None]:
    """``"shared@1"`` -> ``("shared", 1)``; without ``@K`` -> ``(name, None)``."""
    m = _CALL.match(name)
    return (m.group(1), int(m.group(2))) if m else (name, None)


def split_element(name: str) -> tuple[str, tuple[int | str, ...]]:
    """``"rnn[0]"`` -> ``("rnn", (0,))``; a name without brackets -> ``(name, ())``; a call
    index ``@K`` before the brackets is dropped (``split_call`` reads it)."""
    i = name.find("[")
    if i < 0:
        return split_call(name)[0], ()
    base, rest, path = split_call(name[:i])[0], name[i:], []
    while rest:
        m = _ELEMENT.match(rest)
        if not m:
            raise ValueError(f"layer {name!r}: an element is written [INDEX] or ['KEY'], as in "
                             f"'rnn[0]'")
        tok = m.group(1)
        path.append(tok[1:-1] if tok[0] in "'\"" else int(tok))
        rest = rest[m.end():]
    return base, tuple(path)


def get_element(value: Any, path: tuple[int | str, ...], name: str) -> Any:
    for p in path:
        if isinstance(value, Tensor):
            raise ValueError(f"layer {name!r}: its value is a tensor, which has no element "
                             f"{p!r}; name the layer without brackets")
        try:
            value = value[p]
        except (IndexError, KeyError, TypeError) as e:
            raise ValueError(f"layer {name!r}: element {p!r} not found in its "
                             f"{type(value).__name__}") from e
    return value


def set_element(value: Any, path: tuple[int | str, ...], new: object) -> Any:
    """A shallow copy of ``value`` with the element at ``path`` replaced by ``new``."""
    if not path:
        return new
    head: Any = path[0]  # an int for sequences, a key for mappings
    if isinstance(value, (tuple, list)) and isinstance(head, int) and head < 0:
        head += len(value)
    inner = set_element(value[head], path[1:], new)
    if isinstance(value, tuple):
        named: Any = value
        if hasattr(named, "_replace"):  # a named tuple (PackedSequence, ...) keeps its type
            return named._replace(**{named._fields[head]: inner})
        return (*value[:head], inner, *value[head + 1:])
    out = copy.copy(value)
    out[head] = inner
    return out


def resolve_layer(model: nn.Module, layer: LayerSpec) -> tuple[str, nn.Module]:
    """Return ``(dotted_name, module)`` for a name or module of ``model``; raise if unknown.
    A name may end in an element (``"rnn[0]"``): the name is returned with it."""
    if not isinstance(model, nn.Module):
        raise TypeError("layer attribution needs the model to be an nn.Module")
    inner = getattr(model, "_orig_mod", None)
    if isinstance(inner, nn.Module):
        # a torch.compile'd model runs as the module it wraps (forward.eager): names are that
        # module's, with or without the wrapper's prefix
        if isinstance(layer, str) and layer.startswith("_orig_mod."):
            layer = layer[len("_orig_mod."):]
        return resolve_layer(inner, layer)
    if isinstance(layer, nn.Module):
        for name, m in model.named_modules():
            if m is layer:
                return name, m
        raise ValueError(f"layer {type(layer).__name__} is not a submodule of the model")
    if not isinstance(layer, str):
        raise TypeError(f"layer must be a dotted name or an nn.Module, got {type(layer).__name__}")
    modules = dict(model.named_modules())
    base, _ = split_element(layer)
    if base in modules:
        return layer, modules[base]
    close = difflib.get_close_matches(base, [n for n in modules if n], n=5, cutoff=0.5)
    hint = f"; close names: {', '.join(close)}" if close else ""
    raise ValueError(f"unknown layer {layer!r}{hint}")


def tensor_elements(name: str, module: nn.Module, use_input: bool,
                    forward: Callable[[], object], rows: int | None = None) -> list[str]:
    """The names to tap for layer ``name``: itself when its output (or, with ``use_input``,
    its one positional input) is a tensor or an element is named; else one name per
    floating-point tensor among its output's elements (a tuple, list or mapping) or its
    positional inputs, e.g. ``["m[0]", "m[1]"]``, so that the layer is attributed as a whole.
    ``rows``: how many examples ``forward`` runs; an element whose first dimension is not that
    (an RNN's state, batch second) raises ``TypeError`` naming the elements to choose from.
    Cost: ``forward()``, one forward pass of the caller's choosing (without gradients)."""
    if split_element(name)[1]:
        return [name]
    call = split_call(name)[1] or 0
    seen: list[Any] = []  # a module's output or inputs: any container

    def keep(_m, args, out=None):
        seen.append(args if use_input else out)

    hook = module.register_forward_pre_hook(keep) if use_input else \
        module.register_forward_hook(keep)
    try:
        with torch.no_grad():
            forward()
    finally:
        hook.remove()
    if len(seen) <= call:
        return [name]  # never ran: the tap names it when it checks
    value = seen[call]
    if isinstance(value, Tensor) or (use_input and len(value) <= 1):
        return [name]
    keys = value.keys() if isinstance(value, Mapping) else range(len(value)) \
        if isinstance(value, (tuple, list)) else ()
    found = [(f"{name}[{k!r}]", value[k]) for k in keys
             if isinstance(value[k], Tensor) and value[k].is_floating_point()]
    if rows is not None and len(found) > 1:
        odd = [(n, tuple(t.shape)) for n, t in found if t.dim() == 0 or t.shape[0] != rows]
        if odd:
            raise TypeError(f"layer {name!r} gives several tensors, and {odd[0][0]!r} (shape "
                            f"{odd[0][1]} for {rows} example{'s' * (rows != 1)}) is not batch "
                            f"first; name the element to attribute, one of "
                            f"{', '.join(repr(n) for n, _ in found)}")
    return [n for n, _ in found] or [name]


@dataclass(frozen=True)
class RowLayout:
    """Which row each entry of a node-major (or edge-major) tensor belongs to.

    ``counts``: per layout (``"nodes"``, ``"edges"``) the entries of each of the ``rows``
    evaluated examples, in order (row 0's first). Entries of one row are contiguous."""

    rows: int
    counts: Mapping[str, Tensor]

    def kind(self, t: Tensor) -> str | None:
        """The layout of ``t`` by its first dimension: None when it is one entry per row."""
        if t.dim() == 0 or t.shape[0] == self.rows:
            return None
        for k, c in self.counts.items():
            if t.shape[0] == int(c.sum()):
                return k
        return None

    def _mask(self, kind: str, device: torch.device) -> Tensor:
        c = self.counts[kind].to(device)
        width = int(c.max()) if len(c) else 0
        return torch.arange(width, device=device)[None] < c[:, None]

    def to_rows(self, t: Tensor, kind: str) -> Tensor:
        """``(entries, *d)`` -> ``(rows, most entries, *d)``, zero where a row has fewer."""
        mask = self._mask(kind, t.device)
        out = t.new_zeros(*mask.shape, *t.shape[1:])
        return out.index_put((mask,), t) if t.requires_grad else out.index_put_((mask,), t)

    def from_rows(self, t: Tensor, kind: str) -> Tensor:
        """The inverse of ``to_rows``: the padding dropped."""
        return t[self._mask(kind, t.device)]


_LAYOUT: ContextVar[RowLayout | None] = ContextVar("pathattr_row_layout", default=None)
#: Layers whose batch dimension is not the first (``id(module) -> dim``), see ``batch_dims``.
_BATCH_DIMS: ContextVar[Mapping[int, int] | None] = ContextVar("pathattr_batch_dims",
                                                                default=None)


@contextmanager
def batch_dims(dims: Mapping[nn.Module, int]) -> Iterator[None]:
    """Inside the block, a tapped layer of ``dims`` has its batch at that dimension (a
    sequence-first embedding's ``(L, B, d)``: 1); taps see it moved to the front."""
    token = _BATCH_DIMS.set({**(_BATCH_DIMS.get() or {}), **{id(m): d for m, d in dims.items()}})
    try:
        yield
    finally:
        _BATCH_DIMS.reset(token)


@contextmanager
def row_layout(layout: RowLayout) -> Iterator[None]:
    """Declare ``layout`` for the forward run inside the block (see ``RowLayout``)."""
    token = _LAYOUT.set(layout)
    try:
        yield
    finally:
        _LAYOUT.reset(token)


class LayerNotExecuted(RuntimeError):
    pass


class LayerNotReached(RuntimeError):
    """A layer that runs but whose output never reaches the attributed output."""


def check_reached(out: Tensor, layers: Sequence[object]) -> None:
    """Raise ``LayerNotReached`` naming ``layers`` where ``out`` does not depend on them
    (autograd would only say "element 0 of tensors does not require grad")."""
    if not out.requires_grad and layers:
        names = ", ".join(repr(n if isinstance(n, str) else type(n).__name__) for n in layers)
        raise LayerNotReached(
            f"the target output does not depend on layer {names}: it runs, but its output "
            f"never reaches the model's output (a branch whose result is discarded, or "
            f"detached); its attributions would be zero. Attribute to a layer on the way "
            f"to the output")


@dataclass(frozen=True)
class Tap:
    """Where to read an activation: ``layer``'s output, or its positional input with
    ``use_input``; ``replace`` may swap what the forward goes on with."""

    layer: LayerSpec
    use_input: bool = False
    replace: Callable[[Tensor], Tensor] | None = None


class Reading:
    """Per-forward record of one tapped layer call (``tap_layers``)."""

    def __init__(self, name: str, module: nn.Module, use_input: bool,
                 replace: Callable[[Tensor], Tensor] | None, copy: bool = False):
        self.name, self.module, self.use_input, self.replace = name, module, use_input, replace
        self.copy = copy
        self.path = split_element(name)[1] or ((0,) if use_input else ())
        self.call = split_call(name.split("[", 1)[0])[1]
        self.value: Tensor | None = None
        self.calls = 0

    def reset(self) -> None:
        self.value, self.calls = None, 0

    @property
    def seen(self) -> bool:
        """Whether the call this tap reads has happened in the current forward."""
        return self.calls > (self.call or 0)

    def check(self) -> Tensor:
        what = "input" if self.use_input else "output"
        if self.call is not None:
            if not self.seen or self.value is None:
                raise LayerNotExecuted(f"layer {self.name!r}: call {self.call} never happened "
                                       f"(the module ran {self.calls} times)")
            return self.value
        if self.calls == 0 or self.value is None:
            raise LayerNotExecuted(f"layer {self.name!r} was never executed in the forward pass")
        if self.calls > 1:
            raise RuntimeError(
                f"layer {self.name!r} was executed {self.calls} times in one forward pass, so its "
                f"{what} is ambiguous; choose a module that runs once (e.g. its parent block), "
                f"or one call with {self.name + '@0'!r}"
            )
        return self.value

    def take(self, value: object) -> object:
        """Record the layer's output (or its positional inputs) and return what the forward
        goes on with."""
        self.calls += 1
        if self.calls - 1 != (self.call or 0):
            return value
        t = get_element(value, self.path, self.name)
        if not isinstance(t, Tensor):
            kind = "input" if self.use_input else "output"
            hint = ("; name one of its elements, e.g. " + repr(f"{self.name}[0]")
                    if isinstance(t, (tuple, list, Mapping)) else "")
            raise TypeError(f"layer {self.name!r} {kind} is a {type(t).__name__}, not a "
                            f"tensor{hint}")
        new = self._take(t)
        return value if new is t else set_element(value, self.path, new)

    def _take(self, t: Tensor) -> Tensor:
        dim = (_BATCH_DIMS.get() or {}).get(id(self.module), 0)
        if dim:
            if t.dim() <= dim:
                raise ValueError(f"layer {self.name!r}: batch dimension {dim} asked for, but "
                                 f"its value has shape {tuple(t.shape)}")
            return self._take_rows(t.movedim(dim, 0)).movedim(0, dim)
        layout = _LAYOUT.get()
        kind = layout.kind(t) if layout is not None else None
        if layout is not None and kind is not None:
            return layout.from_rows(self._take_rows(layout.to_rows(t, kind)), kind)
        return self._take_rows(t)

    def _take_rows(self, t: Tensor) -> Tensor:
        if self.replace is not None:
            t = self.replace(t)
        if t.requires_grad:
            # The forward goes on with a copy: an in-place op later in the model (an inplace
            # ReLU) then neither changes the kept tensor nor moves the gradient taken with
            # respect to it, and a leaf that requires grad is never modified in place.
            self.value = t
            return t.clone()
        # without a graph, keep a copy instead, for the same reason
        self.value = t.clone() if self.copy else t
        return t


@contextmanager
def tap_layers(model: nn.Module, taps: Sequence[Tap], copy: bool = False
               ) -> Iterator[list[Reading]]:
    """Install a hook for each of ``taps`` (layers of ``model``) and remove them on exit.

    Each reading keeps the activation its layer produced (or its replacement; with ``copy`` a copy
    of it) in the last forward; ``tap.check()`` returns it, raising if the layer ran zero or
    several times.
    """
    readings, handles = [], []
    try:
        for spec in taps:
            name, module = resolve_layer(model, spec.layer)
            use_input = spec.use_input
            tap = Reading(name, module, use_input, spec.replace, copy)
            if use_input:
                def pre(_m, args, tap=tap):
                    if not args:
                        raise TypeError(f"layer {tap.name!r} was called without positional input")
                    new = tap.take(args)
                    return new if new is not args else None
                handles.append(module.register_forward_pre_hook(pre))
            else:
                def post(_m, _args, out, tap=tap):
                    new = tap.take(out)
                    return new if new is not out else None
                handles.append(module.register_forward_hook(post))
            readings.append(tap)
        yield readings
    finally:
        for h in handles:
            h.remove()


class StopForward(Exception):
    """Raised by a hook to end a forward pass once the needed activation is captured."""


@contextmanager
def stop_when_tapped(taps: list[Reading]) -> Iterator[None]:
    """Abort the forward pass as soon as every tap has seen its layer.

    Enter it after ``tap_layers``: its hooks then run after the taps' own, which record first.
    """
    def stop(*_):
        if all(t.seen for t in taps):
            raise StopForward
    handles = [t.module.register_forward_pre_hook(stop) if t.use_input
               else t.module.register_forward_hook(stop) for t in taps]
    try:
        yield
    finally:
        for h in handles:
            h.remove()
