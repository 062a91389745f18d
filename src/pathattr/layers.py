"""Find a layer by dotted name, and read or replace its activation with scoped hooks."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from torch import Tensor, nn

LayerSpec = str | nn.Module


def resolve_layer(model: nn.Module, layer: LayerSpec) -> tuple[str, nn.Module]:
    """Return ``(dotted_name, module)`` for a name or module of ``model``; raise if unknown."""
    if not isinstance(model, nn.Module):
        raise TypeError("layer attribution needs the model to be an nn.Module")
    if isinstance(layer, nn.Module):
        for name, m in model.named_modules():
            if m is layer:
                return name, m
        raise ValueError(f"layer {type(layer).__name__} is not a submodule of the model")
    if not isinstance(layer, str):
        raise TypeError(f"layer must be a dotted name or an nn.Module, got {type(layer).__name__}")
    modules = dict(model.named_modules())
    if layer in modules:
        return layer, modules[layer]
    close = difflib.get_close_matches(layer, [n for n in modules if n], n=5, cutoff=0.5)
    hint = f"; close names: {', '.join(close)}" if close else ""
    raise ValueError(f"unknown layer {layer!r}{hint}")


class LayerNotExecuted(RuntimeError):
    pass


class _Tap:
    """Per-forward record of one layer call; ``replace`` may swap the activation."""

    def __init__(self, name: str, module: nn.Module, use_input: bool,
                 replace: Callable[[Tensor], Tensor] | None, copy: bool = False):
        self.name, self.module, self.use_input, self.replace = name, module, use_input, replace
        self.copy = copy
        self.value: Tensor | None = None
        self.calls = 0

    def reset(self) -> None:
        self.value, self.calls = None, 0

    def check(self) -> Tensor:
        what = "input" if self.use_input else "output"
        if self.calls == 0:
            raise LayerNotExecuted(f"layer {self.name!r} was never executed in the forward pass")
        if self.calls > 1:
            raise RuntimeError(
                f"layer {self.name!r} was executed {self.calls} times in one forward pass, so its "
                f"{what} is ambiguous; choose a module that runs once (e.g. its parent block)"
            )
        return self.value

    def _take(self, t: object) -> Tensor:
        self.calls += 1
        if self.calls > 1:
            return t
        if not isinstance(t, Tensor):
            raise TypeError(f"layer {self.name!r} produced {type(t).__name__}, not a tensor")
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
def tap_layers(
    specs: list[tuple[str, nn.Module, bool, Callable[[Tensor], Tensor] | None]],
    copy: bool = False,
) -> Iterator[list[_Tap]]:
    """Install hooks for ``(name, module, use_input, replace)`` and remove them on exit.

    Each tap keeps the activation its layer produced (or its replacement; with ``copy`` a copy
    of it) in the last forward; ``tap.check()`` returns it, raising if the layer ran zero or
    several times.
    """
    taps, handles = [], []
    try:
        for name, module, use_input, replace in specs:
            tap = _Tap(name, module, use_input, replace, copy)
            if use_input:
                def pre(_m, args, tap=tap):
                    if not args:
                        raise TypeError(f"layer {tap.name!r} was called without positional input")
                    new = tap._take(args[0])
                    return (new, *args[1:]) if new is not args[0] else None
                handles.append(module.register_forward_pre_hook(pre))
            else:
                def post(_m, _args, out, tap=tap):
                    new = tap._take(out)
                    return new if new is not out else None
                handles.append(module.register_forward_hook(post))
            taps.append(tap)
        yield taps
    finally:
        for h in handles:
            h.remove()


class StopForward(Exception):
    """Raised by a hook to end a forward pass once the needed activation is captured."""


@contextmanager
def stop_when_tapped(taps: list[_Tap]) -> Iterator[None]:
    """Abort the forward pass as soon as every tap has seen its layer.

    Enter it after ``tap_layers``: its hooks then run after the taps' own, which record first.
    """
    def stop(*_):
        if all(t.calls for t in taps):
            raise StopForward
    handles = [t.module.register_forward_pre_hook(stop) if t.use_input
               else t.module.register_forward_hook(stop) for t in taps]
    try:
        yield
    finally:
        for h in handles:
            h.remove()
