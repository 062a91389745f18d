"""Leave the model exactly as it came: hooks, requires_grad flags, training flags."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

_HOOK_DICTS = (
    "_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
    "_forward_hooks_with_kwargs", "_forward_pre_hooks_with_kwargs", "_forward_hooks_always_called",
    "_state_dict_hooks", "_load_state_dict_pre_hooks",
)


@contextmanager
def model_guard(model: object, freeze_params: bool = True) -> Iterator[None]:
    """Snapshot the model's mutable state and restore it on exit, exceptions included.

    With ``freeze_params`` the parameters' ``requires_grad`` is switched off inside the block,
    so that no parameter gradients are computed (they are never needed for attribution).
    Cost: one pass over the modules and parameters on entry and on exit.
    """
    if not isinstance(model, nn.Module):
        yield
        return
    modules = list(model.modules())
    training = [m.training for m in modules]
    hooks = [{k: dict(getattr(m, k)) for k in _HOOK_DICTS if hasattr(m, k)} for m in modules]
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    try:
        if freeze_params:
            for p in params:
                p.requires_grad_(False)
        yield
    finally:
        for p, f in zip(params, flags):
            p.requires_grad_(f)
        for m, t, h in zip(modules, training, hooks):
            m.training = t
            for k, saved in h.items():
                d = getattr(m, k)
                for key in [key for key in d if key not in saved]:
                    del d[key]
