"""DeepLIFT rules for operations built from simpler ones: normalisers, attention, recurrence.

Two kinds, both keeping summation-to-delta exact (every step below is exact):

**Composite rules** (``COMPOSITES``) see the op's varying input ``z`` and its reference ``z'``
at once and build the output from *pairs* (a value on the input run and its reference) with
three primitives: linear maps (autograd's chain rule is DeepLIFT's linear rule), elementwise
``f`` with Rescale's multiplier ``(f(u) - f(u')) / (u - u')``, and the product of two varying
factors with the Shapley split ``d(ab) = da (b + b')/2 + (a + a')/2 db``.

* logsumexp ``L = log sum exp z``: the chain ``exp -> sum -> log`` with Rescale at each step,
  whose contributions are ``C_j = dL de_j / ds`` (``LogSumExp``: no overflow, no underflow).
* softmax: ``y = exp(z - L(z))`` (Rescale on ``exp``); log_softmax: ``z - L(z)``. Written
  through ``L`` rather than as ``e * (1/s)`` because that product's Shapley split cancels
  badly when one run's ``s`` is tiny (float32 relative errors of 3e-4 measured). The DeepLIFT
  paper sidesteps softmax by attributing to its input logits (and suggests normalising
  contributions); Captum applies Rescale elementwise, ``dy_i / dz_i``, which does not sum to
  the output change (our tests show both deltas).
* layer_norm / rms_norm / group_norm: centring ``u = z - mean z`` is linear; then
  ``v = mean(u u)`` (a product), ``r = 1/sqrt(v + eps)`` (Rescale), ``y = u r`` (a product
  split at the end where ``r`` is smaller, see ``scaled``), then the affine ``w y + b``. RMS
  norm skips the centring; group norm normalises per group of channels.

Inside a composite, nonlinearities use Rescale under either rule (RevealCancel needs the terms
of a linear layer, which these intermediate values do not have).

**Decompositions** (``DECOMPOSITIONS``) re-run a fused kernel as the ops it is made of, under
the mode, so each op gets its own rule: ``scaled_dot_product_attention`` (scores ``q k^T s``,
causal, boolean and additive masks, grouped heads, softmax, ``attn v``),
``multi_head_attention_forward`` (projections, key-padding and attention masks, heads, output
projection, averaged weights), and ``torch.lstm`` / ``torch.gru`` unrolled into their cells
(any number of layers, bidirectional, batch-first or not; gates by Rescale or RevealCancel,
the cell's products by the Shapley split). Each equals its fused kernel to rounding (tested).
Refused with ``NoDeepLiftRule``: dropout in training, packed sequences, LSTM projections,
``bias_k`` / ``add_zero_attn`` / static keys.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .multipliers import Pair, Rescale, rescale_multiplier, scaled, shapley_product
from .ops import NoDeepLiftRule


def elementwise(f: Callable[[Tensor], Tensor], p: Pair) -> Pair:
    """``f`` elementwise, with Rescale's multiplier (masked scores may be -inf in both runs)."""
    return Pair(Rescale.apply(p.t, f, p.ref, True), f(p.ref))


def product(p: Pair, q: Pair) -> Pair:
    """``p * q`` (broadcasting), with the Shapley split of the change."""
    return Pair(shapley_product(torch.mul, (p.t, q.t), {}, 0, 1, p.ref, q.ref), p.ref * q.ref)


def _dim(args: tuple, kwargs: dict) -> int:
    dim = kwargs.get("dim", args[0] if args else None)
    if dim is None:
        raise NoDeepLiftRule("softmax without dim: give the dimension explicitly")
    return dim


class LogSumExp(torch.autograd.Function):
    """``L = log sum_j exp(z_j)`` over ``dim`` with the exact multipliers of the chain
    ``exp -> sum -> log`` (Rescale at each step), computed without over- or underflow:

        C_j = (L - L') * (e_j - e'_j) / (s - s'),    e = exp(z - c), s = sum e

    ``c`` is one constant per row for both runs (``max(max z, max z')``); the ratios do not
    depend on it, and the run that is far below it only loses terms that are negligible.
    ``L`` itself is ``torch.logsumexp``. Where a difference is too small to divide by the
    derivative stands in (Rescale's convention)."""

    @staticmethod
    def forward(ctx, z: Tensor, z_ref: Tensor, dim: int) -> Tensor:
        c = torch.maximum(z.amax(dim, keepdim=True), z_ref.amax(dim, keepdim=True))
        c = torch.where(torch.isfinite(c), c, torch.zeros_like(c))  # a fully masked row
        big, ref = torch.logsumexp(z, dim, keepdim=True), torch.logsumexp(z_ref, dim, keepdim=True)
        u, u_ref = z - c, z_ref - c
        e, e_ref = torch.exp(u), torch.exp(u_ref)
        s, s_ref = e.sum(dim, keepdim=True), e_ref.sum(dim, keepdim=True)
        q = rescale_multiplier(torch.exp, u, u - u_ref, e - e_ref, (e, e_ref), True)
        ctx.save_for_backward(q * rescale_multiplier(torch.log, s, s - s_ref, big - ref,
                                                     (big, ref)))
        return big

    @staticmethod
    def backward(ctx, g: Tensor):
        (m,) = ctx.saved_tensors
        return g * m, None, None


def _centred(z: Pair, dim: int) -> Pair:
    """``z - logsumexp(z)``: the log-probabilities, each run's computed stably."""
    lse = Pair(LogSumExp.apply(z.t, z.ref, dim), torch.logsumexp(z.ref, dim, keepdim=True))
    return z - lse


def _dtype(z: Tensor, z_ref: Tensor, kwargs: dict) -> tuple[Tensor, Tensor]:
    dtype = kwargs.get("dtype")
    return (z, z_ref) if dtype is None else (z.to(dtype), z_ref.to(dtype))


def _wide(z: Tensor, z_ref: Tensor) -> Pair:
    """Both runs in float64 when they are float32 or narrower: the rule's differences of logits
    and its sums of ratios are formed at twice the model's precision, rounded once on the way
    back."""
    if z.dtype == torch.float64 or not z.is_floating_point():
        return Pair(z, z_ref)
    return Pair(z.double(), z_ref.double())


def _unshifted(z: Pair, dim: int) -> Pair:
    """``z`` against its reference moved by the common shift ``t`` of the change, which
    softmax ignores: ``y(z' + t) = y(z')``, so the change ``y(z) - y(z')`` is the same, and
    logit ``j`` contributes ``M_j d_j`` with ``d_j = dz_j - t`` instead of ``M_j dz_j`` minus
    its share of ``dL``. Contributions then scale with the change *between* logits, not with
    the logits' common offset, which otherwise cancels to float32's rounding times the offset
    (1e-2 measured on Captum's all-ones softmax model). ``t`` is the change of the logit that
    moved least where every live logit moved the same way (else 0), so ``d_j / dz_j`` lies in
    ``[0, 1]``: the multipliers flowing back through ``z`` are scaled by it, which keeps
    ``sum_j (multiplier_j dz_j)`` exact. Dead logits (probability 0 in both runs: masked)
    contribute nothing either way and do not take part."""
    with torch.no_grad():
        live = (torch.softmax(z.t, dim) > 0) | (torch.softmax(z.ref, dim) > 0)
        dz = torch.where(live, z.t - z.ref, 0.0)
        low = torch.where(live, dz, math.inf).amin(dim, keepdim=True)
        high = torch.where(live, dz, -math.inf).amax(dim, keepdim=True)
        shift = torch.where(torch.isfinite(low) & (low > 0), low,
                            torch.where(torch.isfinite(high) & (high < 0), high, 0.0))
        ratio = torch.where(live & (dz != 0), (dz - shift) / torch.where(dz != 0, dz, 1.0), 1.0)
    return Pair(_ScaledGradient.apply(z.t, ratio), z.ref + shift)


class _ScaledGradient(torch.autograd.Function):
    """The identity whose backward multiplies by ``ratio`` (masked ``-inf`` logits stay
    ``-inf``: ``z + (z - z.detach()) * ratio`` would make them NaN)."""

    @staticmethod
    def forward(ctx, z: Tensor, ratio: Tensor) -> Tensor:
        ctx.save_for_backward(ratio)
        return z.clone()

    @staticmethod
    def backward(ctx, g: Tensor):
        (ratio,) = ctx.saved_tensors
        return g * ratio, None


def softmax(z: Tensor, z_ref: Tensor, *args, **kwargs) -> Tensor:
    z, z_ref = _dtype(z, z_ref, kwargs)
    dim = _dim(args, kwargs)
    return elementwise(torch.exp, _centred(_unshifted(_wide(z, z_ref), dim), dim)).t.to(z.dtype)


def log_softmax(z: Tensor, z_ref: Tensor, *args, **kwargs) -> Tensor:
    z, z_ref = _dtype(z, z_ref, kwargs)
    dim = _dim(args, kwargs)
    return _centred(_unshifted(_wide(z, z_ref), dim), dim).t.to(z.dtype)


def logsumexp(z: Tensor, z_ref: Tensor, dim, keepdim: bool = False) -> Tensor:
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    if len(dims) != 1:
        raise NoDeepLiftRule("logsumexp over several dimensions has no DeepLIFT rule")
    out = LogSumExp.apply(z, z_ref, dims[0])
    return out if keepdim else out.squeeze(dims[0])


def _normalise(z: Pair, dims: tuple[int, ...], eps: float, centre: bool) -> Pair:
    u = z - z.map(torch.mean, dims, keepdim=True) if centre else z
    v = product(u, u).map(torch.mean, dims, keepdim=True)
    return scaled(u, elementwise(lambda t: torch.rsqrt(t + eps), v))


def _affine(y: Pair, weight: Tensor | None, bias: Tensor | None) -> Tensor:
    out = y.t if weight is None else y.t * weight
    return out if bias is None else out + bias


def layer_norm(z: Tensor, z_ref: Tensor, normalized_shape, weight=None, bias=None,
               eps: float = 1e-5) -> Tensor:
    dims = tuple(range(-len(tuple(normalized_shape)), 0))
    return _affine(_normalise(Pair(z, z_ref), dims, eps, centre=True), weight, bias)


def rms_norm(z: Tensor, z_ref: Tensor, normalized_shape, weight=None, eps=None) -> Tensor:
    dims = tuple(range(-len(tuple(normalized_shape)), 0))
    eps = torch.finfo(z.dtype).eps if eps is None else eps
    return _affine(_normalise(Pair(z, z_ref), dims, eps, centre=False), weight, None)


def group_norm(z: Tensor, z_ref: Tensor, num_groups: int, weight=None, bias=None,
               eps: float = 1e-5) -> Tensor:
    n, c = z.shape[:2]
    grouped = Pair(z, z_ref).map(torch.reshape, (n, num_groups, -1))
    y = _normalise(grouped, (2,), eps, centre=True).map(torch.reshape, tuple(z.shape))
    shape = (1, c, *([1] * (z.dim() - 2)))
    return _affine(y, None if weight is None else weight.view(shape),
                   None if bias is None else bias.view(shape))


def _ops(*pairs: tuple[object, str]) -> list:
    return [getattr(ns, name) for ns, name in pairs if hasattr(ns, name)]


COMPOSITES: dict[Callable, Callable] = {
    **dict.fromkeys(_ops((F, "softmax"), (torch, "softmax"), (Tensor, "softmax")), softmax),
    **dict.fromkeys(_ops((F, "log_softmax"), (torch, "log_softmax"), (Tensor, "log_softmax")),
                    log_softmax),
    **dict.fromkeys(_ops((torch, "logsumexp"), (Tensor, "logsumexp")), logsumexp),
    **dict.fromkeys(_ops((F, "layer_norm"), (torch, "layer_norm")), layer_norm),
    **dict.fromkeys(_ops((F, "rms_norm"), (torch, "rms_norm")), rms_norm),
    **dict.fromkeys(_ops((F, "group_norm"), (torch, "group_norm")), group_norm),
}


# Decompositions: plain torch code, run under the mode (so every op below gets its rule).

def scaled_dot_product_attention(q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None = None,
                                 dropout_p: float = 0.0, is_causal: bool = False,
                                 scale: float | None = None, enable_gqa: bool = False) -> Tensor:
    if dropout_p > 0:
        raise NoDeepLiftRule("scaled_dot_product_attention with dropout_p > 0 is random; call "
                             "model.eval()")
    if enable_gqa and k.shape[-3] != q.shape[-3]:
        k = k.repeat_interleave(q.shape[-3] // k.shape[-3], -3)
        v = v.repeat_interleave(q.shape[-3] // v.shape[-3], -3)
    scores = torch.matmul(q, k.transpose(-2, -1)) * (
        1 / math.sqrt(q.shape[-1]) if scale is None else scale)
    n_q, n_k = q.shape[-2], k.shape[-2]
    hidden = None  # True where a query may not attend (constants: masks only)
    if is_causal:
        hidden = ~torch.ones(n_q, n_k, dtype=torch.bool, device=q.device).tril()
    if attn_mask is not None:
        blocked = ~attn_mask if attn_mask.dtype == torch.bool else torch.isneginf(attn_mask)
        hidden = blocked if hidden is None else hidden | blocked
        if attn_mask.dtype != torch.bool:
            scores = scores + attn_mask
    if hidden is not None:
        scores = scores.masked_fill(hidden, -math.inf)
        # the kernel's convention: a query that may attend nowhere gets 0, not NaN
        dead = hidden.all(-1, keepdim=True)
        if bool(dead.any()):
            scores = scores.masked_fill(dead, 0.0)
            return torch.matmul(torch.softmax(scores, -1).masked_fill(dead, 0.0), v)
    return torch.matmul(torch.softmax(scores, -1), v)


def multi_head_attention_forward(
        query, key, value, embed_dim_to_check, num_heads, in_proj_weight, in_proj_bias, bias_k,
        bias_v, add_zero_attn, dropout_p, out_proj_weight, out_proj_bias, training=True,
        key_padding_mask=None, need_weights=True, attn_mask=None,
        use_separate_proj_weight=False, q_proj_weight=None, k_proj_weight=None,
        v_proj_weight=None, static_k=None, static_v=None, average_attn_weights=True,
        is_causal=False):
    if bias_k is not None or bias_v is not None or add_zero_attn or static_k is not None \
            or static_v is not None:
        raise NoDeepLiftRule("multi_head_attention_forward with bias_k/bias_v, add_zero_attn "
                             "or static keys has no DeepLIFT decomposition")
    if training and dropout_p > 0:
        raise NoDeepLiftRule("multi-head attention with dropout in training mode is random; "
                             "call model.eval()")
    unbatched = query.dim() == 2
    if unbatched:
        query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
        if key_padding_mask is not None:
            key_padding_mask = key_padding_mask.unsqueeze(0)
    n_q, batch, embed = query.shape
    n_k, head = key.shape[0], embed // num_heads
    if use_separate_proj_weight:
        if q_proj_weight is None or k_proj_weight is None or v_proj_weight is None:
            raise TypeError("use_separate_proj_weight needs q_, k_ and v_proj_weight")
        weights = (q_proj_weight, k_proj_weight, v_proj_weight)
    else:
        weights = in_proj_weight.chunk(3)
    biases = (None,) * 3 if in_proj_bias is None else in_proj_bias.chunk(3)

    def heads(t: Tensor, w: Tensor, b: Tensor | None, n: int) -> Tensor:
        return F.linear(t, w, b).reshape(n, batch, num_heads, head).permute(1, 2, 0, 3)

    q = heads(query, weights[0], biases[0], n_q)
    k = heads(key, weights[1], biases[1], n_k)
    v = heads(value, weights[2], biases[2], n_k)
    mask = torch.zeros(batch, 1, n_q, n_k, dtype=q.dtype, device=q.device)
    if attn_mask is not None:  # torch's convention: True = may not attend
        m = attn_mask.reshape(-1, *attn_mask.shape[-2:])
        m = m.reshape(batch, num_heads, n_q, n_k) if m.shape[0] > 1 else m.unsqueeze(0)
        mask = mask + (torch.zeros_like(m, dtype=q.dtype).masked_fill(m, -math.inf)
                       if m.dtype == torch.bool else m.to(q.dtype))
    if key_padding_mask is not None:
        m = key_padding_mask.reshape(batch, 1, 1, n_k)
        mask = mask + (torch.zeros_like(m, dtype=q.dtype).masked_fill(m, -math.inf)
                       if m.dtype == torch.bool else m.to(q.dtype))
    scores = torch.matmul(q, k.transpose(-2, -1)) * (1 / math.sqrt(head)) + mask
    attn = torch.softmax(scores, -1)
    out = torch.matmul(attn, v).permute(2, 0, 1, 3).reshape(n_q, batch, embed)
    out = F.linear(out, out_proj_weight, out_proj_bias)
    weights_out = None
    if need_weights:
        weights_out = attn.mean(1) if average_attn_weights else attn
    if unbatched:
        out = out.squeeze(1)
        weights_out = None if weights_out is None else weights_out.squeeze(0)
    return out, weights_out


def _recurrent(cell: Callable, n_states: int, gates: int, input: Tensor, hx, params,
               has_biases: bool, num_layers: int, dropout: float, train: bool,
               bidirectional: bool, batch_first: bool) -> tuple[Tensor, ...]:
    """An ``nn.LSTM`` / ``nn.GRU`` kernel unrolled: per layer and direction, ``cell`` over
    time. ``hx``: ``n_states`` tensors ``(layers * directions, N, H)``."""
    if not isinstance(hx, (tuple, list)):
        hx = (hx,)
    if train and dropout > 0 and num_layers > 1:
        raise NoDeepLiftRule("a recurrent net with dropout in training mode is random; call "
                             "model.eval()")
    dirs = 2 if bidirectional else 1
    per = 4 if has_biases else 2
    if len(params) != num_layers * dirs * per:
        raise NoDeepLiftRule("an LSTM with proj_size has no DeepLIFT decomposition")
    x = input.transpose(0, 1) if batch_first else input  # (T, N, features)
    finals: list[list[Tensor]] = [[] for _ in range(n_states)]
    for layer in range(num_layers):
        outputs = []
        for d in range(dirs):
            i = layer * dirs + d
            w = params[i * per:(i + 1) * per]
            b_ih, b_hh = (w[2], w[3]) if has_biases else (None, None)
            state = tuple(h[i] for h in hx)
            seq: list[Tensor | None] = [None] * x.shape[0]
            for t in (range(x.shape[0]) if d == 0 else reversed(range(x.shape[0]))):
                state = cell(F.linear(x[t], w[0], b_ih).chunk(gates, -1),
                             F.linear(state[0], w[1], b_hh).chunk(gates, -1), state)
                seq[t] = state[0]
            outputs.append(torch.stack([t for t in seq if t is not None]))  # every step ran
            for finals_k, s in zip(finals, state):
                finals_k.append(s)
        x = torch.cat(outputs, -1) if dirs == 2 else outputs[0]
    out = x.transpose(0, 1) if batch_first else x
    return (out, *(torch.stack(f) for f in finals))


def _lstm_cell(gi: tuple[Tensor, ...], gh: tuple[Tensor, ...], state: tuple[Tensor, Tensor]
               ) -> tuple[Tensor, Tensor]:
    i, f, g, o = (a + b for a, b in zip(gi, gh))
    c = torch.sigmoid(f) * state[1] + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def _gru_cell(gi: tuple[Tensor, ...], gh: tuple[Tensor, ...], state: tuple[Tensor]
              ) -> tuple[Tensor]:
    r = torch.sigmoid(gi[0] + gh[0])
    z = torch.sigmoid(gi[1] + gh[1])
    n = torch.tanh(gi[2] + r * gh[2])
    return ((1 - z) * n + z * state[0],)


def lstm(input, hx, *rest):
    if isinstance(hx, Tensor):  # lstm(data, batch_sizes, hx, ...): a PackedSequence
        raise NoDeepLiftRule("an LSTM on a PackedSequence has no DeepLIFT decomposition; pass "
                             "padded tensors")
    return _recurrent(_lstm_cell, 2, 4, input, hx, *rest)


def gru(input, hx, *rest):
    if rest and isinstance(rest[0], Tensor):  # gru(data, batch_sizes, hx, ...): packed
        raise NoDeepLiftRule("a GRU on a PackedSequence has no DeepLIFT decomposition; pass "
                             "padded tensors")
    return _recurrent(_gru_cell, 1, 3, input, hx, *rest)


DECOMPOSITIONS: dict[Callable, Callable] = {
    F.scaled_dot_product_attention: scaled_dot_product_attention,
    F.multi_head_attention_forward: multi_head_attention_forward,
    torch.lstm: lstm,
    torch.gru: gru,
}
