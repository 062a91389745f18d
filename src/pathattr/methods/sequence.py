"""Attribute every token of a continuation to the prompt and the tokens before it — the IG
paper's translation experiment, for today's language models — on one shared path.

Teacher forcing: the sequence is ``s = prompt + targets``; target ``t`` (at position ``P + t``)
is scored from the logits at position ``P + t - 1``, which a causal LM computes from positions
``<= P + t - 1`` only. On one straight path in embedding space over the whole sequence,

    IG_t(s)_l = (e_l - e'_l) . int_0^1 dS_t/de_l (e' + a (e - e')) da,

the gradient of ``S_t`` at positions ``l >= P + t`` is exactly zero, so IG of target ``t`` on the
shared path equals IG on its prefix alone. One forward per path point serves all ``T`` targets;
each target adds one backward on that forward's graph (``engine.per_output_grads``). Per-token
attribution (Captum's ``LLMGradientAttribution``) runs a forward per target and path point.

``method="deeplift"`` (Rescale, exact summation-to-delta through attention, softmax and
normalisation, see ``deeplift_composite``) needs no path: one forward on the baseline sequence,
one on the sequence, then one backward per target, all from the token embeddings.

Encoder-decoders (T5, BART, Marian): the same over the encoder tokens and the decoder tokens
``<= t`` (the start token and the targets before ``t``), both embeddings on one path.

Prompts of a batch may be padded (left or right): each prompt is moved to the right end (left
padding), position ids count real tokens only (``cumsum(mask) - 1``, when the model takes
``position_ids``), and the attention mask travels with every path point, so each prompt's
result is independent of the others. ``SequenceResult.input_ids`` is the sequence as explained.
"""

from __future__ import annotations

import inspect
import sys
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn
from tqdm import tqdm

from ..engine import LayerPath, guarded
from ..forward import choose_output
from ..layers import LayerSpec, resolve_layer
from ..targets import Target
from ..validate import check_eval_mode, check_positive_int
from ._setup import flat_points, rule_tensors, setup
from .deeplift import layer_pass
from .integrated_gradients import GradientSum

SCORES = ("logit", "logprob", "prob")
METHODS = ("ig", "input_x_gradient", "deeplift")


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


def _ids(t: object, name: str, shape: tuple[int, ...] | None = None) -> Tensor:
    if not isinstance(t, Tensor) or t.is_floating_point() or t.dtype == torch.bool \
            or t.dim() != 2:
        raise TypeError(f"{name} must be an integer tensor of shape (batch, tokens), got "
                        f"{getattr(t, 'dtype', type(t).__name__)} "
                        f"{tuple(t.shape) if isinstance(t, Tensor) else ''}")
    if shape is not None and tuple(t.shape) != shape:
        raise ValueError(f"{name} has shape {tuple(t.shape)}, expected {shape}")
    return t.long()


def left_align(ids: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Each row's real tokens moved to the right end, in order (left padding)."""
    order = torch.argsort(mask, dim=1, stable=True)
    return ids.gather(1, order), mask.gather(1, order)


class _EncoderDecoder(nn.Module):
    """An encoder-decoder called with its encoder and decoder ids positionally, so that both
    are inputs (and both lie on the path)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.training = False  # this wrapper's own flag only; the model's stays the user's

    def forward(self, input_ids: Tensor, decoder_input_ids: Tensor,
                attention_mask: Tensor | None = None) -> Tensor:
        return choose_output(self.model(input_ids=input_ids, attention_mask=attention_mask,
                                        decoder_input_ids=decoder_input_ids))


class SequenceAttribution:
    """Attribute generated or given continuation tokens of a language model to its inputs.

    Causal LMs (GPT-2, Llama, any module taking ``(input_ids, attention_mask=...,
    [position_ids=...])``) and encoder-decoders (``config.is_encoder_decoder``: T5, BART,
    Marian), whose targets are attributed to every encoder token and to the decoder tokens
    before them. ``method``: "ig" (Integrated Gradients along the shared path) or
    "input_x_gradient" (the gradient at the input times ``e - e'``). ``layer``: the token
    embeddings (default: found with ``get_input_embeddings()``; for encoder-decoders both
    stacks' embeddings, one module called twice when shared: ``"shared@0"``, ``"shared@1"``).
    """

    def __init__(self, model: nn.Module, method: str = "ig", layer: LayerSpec | None = None):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        self.model, self.method = model, method
        config = getattr(model, "config", None)
        self.seq2seq = bool(getattr(config, "is_encoder_decoder", False))
        if self.seq2seq:
            self.call = _EncoderDecoder(model)
            self.layers = self._seq2seq_layers(layer)
        else:
            self.call = model
            self.layers = [resolve_layer(model, self._embeddings(model, layer))[0]]
            self._positions = "position_ids" in inspect.signature(model.forward).parameters

    @staticmethod
    def _embeddings(model: nn.Module, layer: LayerSpec | None) -> LayerSpec:
        if layer is not None:
            return layer
        get = getattr(model, "get_input_embeddings", None)
        found = get() if callable(get) else None
        if found is None:
            raise TypeError("give layer= (the token embeddings): the model has no "
                            "get_input_embeddings()")
        return found

    def _seq2seq_layers(self, layer: LayerSpec | None) -> list[str]:
        if layer is not None:
            raise TypeError("an encoder-decoder's embeddings are found from its encoder and "
                            "decoder; layer= is for causal LMs")
        enc = self._embeddings(self.model.get_encoder(), None)
        dec = self._embeddings(self.model.get_decoder(), None)
        names = [resolve_layer(self.call, m)[0] for m in (enc, dec)]
        return [f"{names[0]}@0", f"{names[0]}@1"] if enc is dec else names

    def _kwargs(self, mask: Tensor) -> dict[str, Tensor]:
        kw = {"attention_mask": mask}
        if self._positions:
            kw["position_ids"] = (mask.cumsum(1) - 1).clamp(min=0)
        return kw

    def _start_id(self) -> int:
        start = getattr(self.model.config, "decoder_start_token_id", None)
        if start is None:
            raise ValueError("the model's config has no decoder_start_token_id")
        return int(start)

    def generate(self, ids: Tensor, mask: Tensor, max_new_tokens: int) -> Tensor:
        """Greedy continuation ``(B, max_new_tokens)`` of left-aligned prompts (or encoder
        inputs). Cost: ``max_new_tokens`` forwards over the growing sequence (no cache)."""
        check_positive_int(max_new_tokens, "max_new_tokens")
        new: list[Tensor] = []
        dec = ids.new_full((len(ids), 1), self._start_id()) if self.seq2seq else None
        with guarded(self.model), torch.inference_mode():
            for _ in range(max_new_tokens):
                if self.seq2seq:
                    logits = self.call(ids, dec, mask)
                else:
                    logits = choose_output(self.model(ids, **self._kwargs(mask)))
                nxt = logits[:, -1].argmax(-1, keepdim=True)
                new.append(nxt)
                if self.seq2seq:
                    dec = torch.cat([dec, nxt], 1)
                else:
                    ids = torch.cat([ids, nxt], 1)
                    mask = torch.cat([mask, torch.ones_like(nxt)], 1)
        return torch.cat(new, 1)

    def attribute(
        self,
        input_ids: Tensor,
        target_ids: Tensor | None = None,
        max_new_tokens: int | None = None,
        baselines: int | Tensor | None = None,
        attention_mask: Tensor | None = None,
        score: Literal["logit", "logprob", "prob"] = "logit",
        foil_ids: int | Tensor | None = None,
        steps: int = 50,
        rule: str = "gausslegendre",
        batch_size: int | Literal["auto"] = "auto",
        progress: bool = False,
    ) -> SequenceResult:
        """Return each target token's attribution to every position before it, with its
        completeness gap. ``target_ids`` ``(B, T)`` forces the continuation; else
        ``max_new_tokens`` are generated greedily. ``score``: the target's logit, log-probability
        or probability; with ``foil_ids`` (an id, or ``(B, T)``) the score minus the foil's
        (for "logprob" that is the logit difference). ``baselines``: token ids, an int for every
        position or a ``(B, L)`` / ``(L,)`` tensor (causal LMs); default the model's
        ``config.pad_token_id`` when set, else 0. Encoder-decoders: positions are the encoder's
        then the decoder's (its start token, then the targets before the last). ``progress``:
        a bar on stderr counting the backwards (path points times targets).
        Cost: two forwards for the ends, then per example ``steps`` forwards and ``steps * T``
        backwards (one forward per path point for all targets); DeepLIFT: two forwards and
        ``T`` backwards per example.
        """
        check_eval_mode(self.model)
        ids = _ids(input_ids, "input_ids")
        b = ids.shape[0]
        mask = torch.ones_like(ids) if attention_mask is None else \
            _ids(attention_mask, "attention_mask", tuple(ids.shape))
        if score not in SCORES:
            raise ValueError(f"score must be one of {', '.join(SCORES)}, got {score!r}")
        if (target_ids is None) == (max_new_tokens is None):
            raise TypeError("give exactly one of target_ids (forced) or max_new_tokens "
                            "(generated)")
        if ids.shape[1] == 0:
            raise ValueError("input_ids needs at least one prompt token")
        dev = next(self.model.parameters()).device
        ids, mask = ids.to(dev), mask.to(dev)
        if not self.seq2seq:
            ids, mask = left_align(ids, mask)
        if target_ids is None:
            targets = self.generate(ids, mask, max_new_tokens)
        else:
            targets = _ids(torch.as_tensor(target_ids), "target_ids").to(dev)
            if targets.shape[0] != b:
                raise ValueError(f"target_ids has {targets.shape[0]} rows, expected {b}")
        n_prompt, n_targets = ids.shape[1], targets.shape[1]
        foil = None if foil_ids is None else torch.as_tensor(foil_ids, device=dev).long() \
            .expand(b, n_targets)
        if baselines is None:
            pad = getattr(getattr(self.model, "config", None), "pad_token_id", None)
            baselines = 0 if pad is None else int(pad)
        if self.seq2seq:
            dec_in = torch.cat([targets.new_full((b, 1), self._start_id()), targets[:, :-1]], 1)
            x, kwargs = (ids, dec_in), {"attention_mask": mask}
            seq = torch.cat([ids, dec_in], 1)
            seq_mask = torch.cat([mask, torch.ones_like(dec_in)], 1)
            positions = torch.arange(n_targets, device=dev)
        else:
            seq = torch.cat([ids, targets], 1)
            seq_mask = torch.cat([mask, torch.ones_like(targets)], 1)
            x, kwargs = seq, self._kwargs(seq_mask)
            positions = torch.arange(n_targets, device=dev) + n_prompt - 1

        def scores_of(logits: Tensor, examples: Tensor) -> Tensor:
            sel = logits[:, positions]
            if score == "logprob":
                sel = sel.log_softmax(-1)
            elif score == "prob":
                sel = sel.softmax(-1)
            val = sel.gather(2, targets[examples][..., None])[..., 0]
            if foil is not None:
                val = val - sel.gather(2, foil[examples][..., None])[..., 0]
            return val

        target = Target(b, fn=scores_of, outputs=n_targets)
        s = setup(self.call, x, baselines, target, None, kwargs, integers=True)
        if s.k != 1:
            raise ValueError("SequenceAttribution takes one baseline sequence per example")
        if self.method == "deeplift":
            layers = [resolve_layer(self.call, name) for name in self.layers]
            diffs, grads, out, out_ref, counts = layer_pass(s, layers, "rescale", False,
                                                            batch_size)
            out_delta, alphas, weights = out - out_ref, None, None
            extra = {"rules": dict(counts)}
        else:
            with guarded(self.model):
                engine = s.engine(batch_size, channels_last=False)
                f1, f0, ends = engine.ends(self.layers)
                engine.layer_path = LayerPath(self.layers, [a for a, _ in ends],
                                              [e for _, e in ends])
                if self.method == "ig":
                    alphas, weights = rule_tensors(rule, steps, ends[0][0])
                else:
                    alphas = weights = torch.ones(1, dtype=ends[0][0].dtype, device=dev)
                rows, flat_a = flat_points(b, alphas)
                acc = GradientSum(b, weights.repeat(b))
                with tqdm(total=len(rows) * n_targets, unit="backward", disable=not progress,
                          file=sys.stderr, desc=f"{n_targets} targets", leave=False) as bar:
                    for ch in engine.gradients(rows, flat_a):
                        acc.add(ch, ch.grads[:len(self.layers)])
                        bar.update(len(ch.rows) * n_targets)
            diffs, grads, out_delta = [e - a for a, e in ends], acc.sums, f1 - f0
            extra = {"rule": rule if self.method == "ig" else None,
                     "steps": steps if self.method == "ig" else 1}
        # per layer (encoder, decoder) then concatenated along positions
        scores = torch.cat([(g * d[:, None]).flatten(3).sum(-1) for g, d in zip(grads, diffs)], 2)
        return SequenceResult(seq, seq_mask, targets, scores, scores.sum(-1) - out_delta,
                              alphas, weights,
                              {"output_delta": out_delta, "score": score, "method": self.method,
                               **extra, "prompt_length": n_prompt, "foil_ids": foil,
                               "encoder_decoder": self.seq2seq})
