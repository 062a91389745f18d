"""The result of ``SequenceAttribution``: every target token's scores per position, and
their grouping into words."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor


@dataclass
class SequenceResult:
    """Attributions of each target token to the sequence before it.

    input_ids, attention_mask: ``(B, L)`` the explained sequence, prompt (left-padded) then
    targets, ``L = P + T``. target_ids: ``(B, T)`` the explained tokens. scores: ``(B, T, L)``
    attribution of target ``t`` to each position (summed over the embedding dimension; 0 at
    positions ``>= P + t``). delta: ``(B, T)`` completeness gap per target token, ``scores.sum(-1)
    - (S_t(x) - S_t(x'))``. alphas, weights: the path's rule (None for DeepLIFT, which has no
    path). info: ``output_delta`` ``(B, T)``, the score, method, rule, steps and
    ``prompt_length`` ``P``.
    """

    input_ids: Tensor
    attention_mask: Tensor
    target_ids: Tensor
    scores: Tensor
    delta: Tensor
    alphas: Tensor | None
    weights: Tensor | None
    info: dict[str, Any] = field(default_factory=dict)
    conductance: dict[str, Tensor] = field(default_factory=dict)

    def _repr_html_(self) -> str:
        """Jupyter's view: each example's target x position matrix (``viz.notebook``)."""
        from ...viz.notebook import sequence_html_view

        return sequence_html_view(self)

    def aggregate(self, groups: Tensor, reduce: Literal["sum", "mean", "absmax"] = "sum"
                  ) -> Tensor:
        """Scores per group of positions, e.g. words from their sub-word pieces (a fast
        tokenizer's ``word_ids()``, aligned with ``input_ids``). ``groups`` ``(B, L)``: each
        position's group, ``-1`` to leave it out (padding, special tokens). Returns
        ``(B, T, G)`` with ``G = groups.max() + 1``: the sum, the mean, or the signed score of
        largest magnitude ("absmax") of each group. Cost: a few scatters."""
        if reduce not in ("sum", "mean", "absmax"):
            raise ValueError(f"reduce must be 'sum', 'mean' or 'absmax', got {reduce!r}")
        g = torch.as_tensor(groups, device=self.scores.device).long()
        if g.shape != self.input_ids.shape:
            raise ValueError(f"groups has shape {tuple(g.shape)}, expected "
                             f"{tuple(self.input_ids.shape)} (one group per position)")
        keep = (g >= 0)[:, None, :].expand_as(self.scores)
        idx = g.clamp(min=0)[:, None, :].expand_as(self.scores)
        src = self.scores.where(keep, 0.0)
        shape = (*self.scores.shape[:2], int(g.max()) + 1 if g.numel() else 0)
        total = self.scores.new_zeros(shape).scatter_add_(2, idx, src)
        if reduce == "sum":
            return total
        if reduce == "mean":
            count = self.scores.new_zeros(shape).scatter_add_(2, idx, keep.to(src.dtype))
            return total / count.clamp(min=1)
        hi = self.scores.new_zeros(shape).scatter_reduce_(2, idx, src, "amax", include_self=False)
        lo = self.scores.new_zeros(shape).scatter_reduce_(2, idx, src, "amin", include_self=False)
        return torch.where(hi.abs() >= lo.abs(), hi, lo)


def word_groups(offsets: Tensor) -> Tensor:
    """Word ids per position from a tokenizer's character offsets (``offset_mapping`` of a fast
    HuggingFace tokenizer, ``(B, L, 2)``, aligned with the sequence to aggregate): a piece
    that starts where the previous one ended continues its word (so "fine," is one word); a gap
    (whitespace) starts a new one; special tokens and padding (empty spans) get ``-1``. For
    tokenizers without ``word_ids()``. Returns ``(B, L)`` long, for
    ``SequenceResult.aggregate``. Cost: a loop over positions."""
    off = torch.as_tensor(offsets)
    if off.dim() != 3 or off.shape[-1] != 2:
        raise ValueError(f"offsets must be (B, L, 2) character spans, got {tuple(off.shape)}")
    groups = torch.full(off.shape[:2], -1, dtype=torch.long)
    for b, row in enumerate(off.tolist()):
        word, end = -1, None
        for i, (start, stop) in enumerate(row):
            if stop <= start:
                end = None  # a special token ends the word before it
                continue
            if end is None or start > end:
                word += 1
            groups[b, i], end = word, stop
    return groups
