"""The LM head's closed-form gradient per target row (``_Head``)."""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import Tensor, nn


class _Head:
    """Each target's backward without the LM head's: ``logits = h W^T + b`` (the model's
    ``get_output_embeddings()``, an ``nn.Linear``), so ``dS_t/dh`` at target ``t``'s row is
    known in closed form (logit: ``W[y]``; log-probability: ``W[y] - p W``; probability:
    ``p_y (W[y] - p W)``; a foil subtracts its own), and the score returned is
    ``S + (h . g - (h . g).detach())`` with ``g`` fixed: the value ``S`` exactly, the gradient
    ``g . dh``. Autograd would otherwise run every target's backward through the whole head
    (vocabulary x hidden for every kept position), most of a small LM's backward.

    Used only where the model returns the head's output unchanged (the same tensor): a model
    that adds a bias or caps the logits after the head (BART's ``final_logits_bias``, Gemma's
    soft-capping) gets the plain backward. Hooks live only inside ``active()``.
    """

    def __init__(self, model: nn.Module):
        get = getattr(model, "get_output_embeddings", None)
        found = get() if callable(get) else None
        self.linear = found if isinstance(found, nn.Linear) else None
        self.h: Tensor | None = None
        self.out: Tensor | None = None

    @contextmanager
    def active(self):
        if self.linear is None:
            yield
            return

        def keep_input(_m, args):
            self.h = args[0]

        def keep_output(_m, _args, out):
            self.out = out

        handles = [self.linear.register_forward_pre_hook(keep_input),
                   self.linear.register_forward_hook(keep_output)]
        try:
            yield
        finally:
            for h in handles:
                h.remove()
            self.h = self.out = None

    def read(self, logits: Tensor) -> bool:
        """Whether ``logits`` are this forward's head output, unchanged."""
        return self.out is not None and logits is self.out and self.h is not None

    def rowwise(self, val: Tensor, raw: Tensor, positions: Tensor, score: str, y: Tensor,
                foil: Tensor | None) -> Tensor:
        """``val`` (``(n, T)``, computed from ``raw`` logits at ``positions``) with its
        gradient routed through the head's input rows alone."""
        assert self.linear is not None and self.h is not None  # read() said so
        w, h = self.linear.weight, self.h

        def grad_of(ids: Tensor, p: Tensor | None) -> Tensor:
            g = w[ids]
            if score == "logit":
                return g
            assert p is not None  # the softmax, for every score but "logit"
            g = g - p @ w
            if score == "prob":
                g = p.gather(2, ids[..., None]) * g
            return g

        with torch.no_grad():
            p = None if score == "logit" else raw.softmax(-1)
            g = grad_of(y, p)
            if foil is not None:
                g = g - grad_of(foil, p)
        lin = (h[:, positions] * g.to(h.dtype)).sum(-1)
        return val.detach() + (lin - lin.detach()).to(val.dtype)
