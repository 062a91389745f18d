"""DeepLIFT's multipliers: Rescale and RevealCancel for elementwise nonlinearities, max
pooling's credit, the Shapley split of a product, and ``Pair`` (a value with its reference)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

#: Below this absolute difference RevealCancel splits a change term by term.
EPS = 1e-7
#: ``dy`` counts as resolved above this many units of rounding of ``|y| + |y'|``.
RESOLVED = 64


def _derivative(f: Callable[[Tensor], Tensor], z: Tensor) -> Tensor:
    with torch.enable_grad():
        t = z.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(f(t).sum(), t)
    return g


def rescale_multiplier(f: Callable[[Tensor], Tensor], z: Tensor, dz: Tensor,
                       dy: Tensor, ends: tuple[Tensor, Tensor], infinite: bool = False
                       ) -> Tensor:
    """Rescale ``m = dy / dz`` elementwise, for ``dy = f(z) - f(z - dz)`` and ``ends = (f(z),
    f(z - dz))``; the gradient ``f'(z)`` where ``dz`` is 0, or where ``dz`` is below the square
    root of the dtype's epsilon *and* ``dy`` is within ``RESOLVED`` roundings of ``|f(z)| +
    |f(z - dz)|`` (there the quotient is noise; ``f`` must act elementwise); with ``infinite``
    also where ``dz`` is NaN (both runs at the same infinity: a masked attention score). A
    secant that is resolved is kept however small ``dz`` is: it keeps ``m dz = dy`` exact,
    where the gradient would be off by ``f'' dz^2 / 2`` (an RMSNorm's ``rsqrt(v + eps)`` at
    ``v ~ eps``: relative errors of 1e-4 with an absolute threshold of 1e-7). Cost: a few
    elementwise passes, plus a backward of ``f`` on the elements that take the gradient."""
    m = dy / dz
    eps = torch.finfo(dz.dtype).eps if dz.is_floating_point() else 0.0
    # flat indices, then take/put_: boolean-mask indexing scans the mask once per tensor;
    # whether dy is resolved is read only where dz is small
    near = dz.abs() < eps ** 0.5
    if infinite:
        near |= dz.isnan()
    idx = near.flatten().nonzero().squeeze(1)
    if len(idx):
        d, size = dz.take(idx), ends[0].take(idx).abs() + ends[1].take(idx).abs()
        idx = idx[(d == 0) | d.isnan() | (dy.take(idx).abs() <= RESOLVED * eps * size)]
    if len(idx):
        m.put_(idx, _derivative(f, z.take(idx)))
    return m


def reveal_cancel_multipliers(f: Callable[[Tensor], Tensor], z: Tensor, y: Tensor, z_ref: Tensor,
                              y_ref: Tensor, r: Tensor) -> tuple[Tensor, Tensor]:
    """RevealCancel ``(m+, m-)`` of ``y = f(z)`` (reference ``y' = f(z')``) whose difference
    ``dz`` is a sum of terms with ``dz+ - dz- = r`` (``r``: sum of the terms' absolute values),
    so ``dz+- = (dz +- r) / 2``.

        dy+ = [f(z' + dz+) - f(z')] / 2 + [f(z) - f(z' + dz-)] / 2,   m+ = dy+ / dz+
        dy- = [f(z' + dz-) - f(z')] / 2 + [f(z) - f(z' + dz+)] / 2,   m- = dy- / dz-

    With ``s = f(z' + dz+) - f(z' + dz-)`` these are ``m+- = (dy +- s) / (dz +- r)``, and
    ``z' + dz+- = (z + z') / 2 +- r / 2``: written so, the whole rule is twelve elementwise
    passes. Where a part may be below ``EPS`` (``r - |dz| < 2 EPS``, since ``r >= |dz|``) both
    multipliers are recomputed term by term, with Rescale's for that part.
    """
    dz, dy = z - z_ref, y - y_ref
    mid = torch.lerp(z_ref, z, 0.5)
    s = f(torch.add(mid, r, alpha=0.5)).sub_(f(mid.sub_(r, alpha=0.5)))
    m_pos = torch.add(dy, s).div_(torch.add(dz, r))
    m_neg = dy.sub_(s).div_(torch.sub(dz, r))
    idx = (torch.sub(r, dz.abs_()) < 2 * EPS).flatten().nonzero().squeeze(1)
    if len(idx):
        parts = _reveal_cancel_by_parts(f, *(t.take(idx) for t in (z, y, z_ref, y_ref, r)))
        for m, part in zip((m_pos, m_neg), parts):
            m.put_(idx, part)
    return m_pos, m_neg


def _reveal_cancel_by_parts(f: Callable[[Tensor], Tensor], z: Tensor, y: Tensor, z_ref: Tensor,
                            y_ref: Tensor, r: Tensor) -> tuple[Tensor, Tensor]:
    """``reveal_cancel_multipliers`` term by term, with Rescale's multiplier for a part below
    ``EPS``: for the few elements where the fast form could divide by (nearly) zero."""
    dz, dy = z - z_ref, y - y_ref
    dpos = (dz + r) / 2
    dneg = dz - dpos
    dy_pos = ((f(z_ref + dpos) - y_ref) + (y - f(z_ref + dneg))) / 2
    m_pos, m_neg = dy_pos / dpos, (dy - dy_pos) / dneg
    for m, part in ((m_pos, dpos), (m_neg, dneg)):
        small = part.abs() < EPS
        m[small] = rescale_multiplier(f, z[small], dz[small], dy[small],
                                      (y[small], y_ref[small]))
    return m_pos, m_neg


class Rescale(torch.autograd.Function):
    """``y = f(z)``; backward ``g * m`` with Rescale's ``m = (y - y') / (z - z')``
    (``infinite``: see ``rescale_multiplier``)."""

    @staticmethod
    def forward(ctx, z: Tensor, f: Callable, z_ref: Tensor, infinite: bool = False) -> Tensor:
        y, y_ref = f(z), f(z_ref)
        ctx.save_for_backward(rescale_multiplier(f, z, z - z_ref, y - y_ref, (y, y_ref),
                                                 infinite))
        return y

    @staticmethod
    def backward(ctx, g: Tensor):
        (m,) = ctx.saved_tensors
        return g * m, None, None, None


class RevealCancel(torch.autograd.Function):
    """``y = f(z)``; ``r = |W| |da|`` is a second input that routes the split backward.

    The multiplier of a preceding input ``a_j`` is ``sum_i W_ij m_i(sign of W_ij da_j)``, which
    equals ``W^T (g (m+ + m-) / 2) + sign(da) |W|^T (g (m+ - m-) / 2)``: the first part flows
    back through ``z`` (the layer's own backward), the second through ``r``. A term that is
    exactly zero (``da_j = 0``, where ``sign`` is 0) gets the mean ``(m+ + m-) / 2``.
    """

    @staticmethod
    def forward(ctx, z: Tensor, r: Tensor, f: Callable, z_ref: Tensor) -> Tensor:
        y = f(z)
        m_pos, m_neg = reveal_cancel_multipliers(f, z, y, z_ref, f(z_ref), r)
        m_mean = torch.lerp(m_pos, m_neg, 0.5)
        ctx.save_for_backward(m_mean, m_pos.sub_(m_mean))
        return y

    @staticmethod
    def backward(ctx, g: Tensor):
        m_mean, m_half_diff = ctx.saved_tensors
        return g * m_mean, g * m_half_diff, None, None


class MaxPool(torch.autograd.Function):
    """Max pooling. Each window's ``dy = max(x) - max(x')`` is credited to one element: the
    argmax at the input if the max rose, the argmax at the reference if it fell (Captum's
    partition). That element changed at least as much, ``|dx| >= |dy|`` with the same sign, so
    its multiplier ``dy / dx`` lies in [0, 1], needs no ``EPS`` and summation-to-delta holds
    exactly per window."""

    @staticmethod
    def forward(ctx, z: Tensor, pool: Callable, k: int, z_ref: Tensor):
        y, idx = pool(z)
        y_ref, idx_ref = pool(z_ref)
        flat_i = idx.flatten(-k)
        dz = z.flatten(-k) - z_ref.flatten(-k)
        dy = y.flatten(-k) - y_ref.flatten(-k)
        i_sel = torch.where(dy >= 0, flat_i, idx_ref.flatten(-k))
        dz_sel = dz.gather(-1, i_sel)
        ctx.save_for_backward(i_sel, dy / torch.where(dz_sel == 0, 1, dz_sel))
        ctx.shape, ctx.k = z.shape, k
        ctx.mark_non_differentiable(idx)
        return y, idx

    @staticmethod
    def backward(ctx, g: Tensor, _g_idx: Tensor):
        i_sel, w = ctx.saved_tensors
        grad = g.new_zeros(ctx.shape).flatten(-ctx.k)
        grad.scatter_add_(-1, i_sel, g.flatten(-ctx.k) * w)
        return grad.view(ctx.shape), None, None, None


@dataclass
class AffineSource:
    """A tensor computed as ``scale * (W a) + shift`` by a linear layer (and batch norm).

    ``abs_terms(u)`` applies ``|scale W|`` to ``u``, so that ``abs_terms(|da|)`` is the sum of
    the absolute values of the terms ``W_ij da_j`` (bias and shift excluded).
    """

    a: Tensor
    abs_terms: Callable[[Tensor], Tensor]


def linear_source(func: Callable, args: tuple, kwargs: dict) -> AffineSource:
    """The ``AffineSource`` of ``F.linear`` / ``F.convNd(a, W, b, ...)`` called positionally."""
    a, weight, rest = args[0], args[1], args[3:]
    options = {k: v for k, v in kwargs.items() if k != "bias"}
    return AffineSource(a, lambda u: func(u, weight.abs(), None, *rest, **options))


def batch_norm_source(src: AffineSource, bound: dict) -> AffineSource:
    """Eval batch norm scales channel c by ``weight_c / sqrt(running_var_c + eps)``."""
    scale = (bound["running_var"] + bound.get("eps", 1e-5)).rsqrt()
    if bound.get("weight") is not None:
        scale = scale * bound["weight"]
    scale = scale.abs()

    def abs_terms(u: Tensor) -> Tensor:
        t = src.abs_terms(u)
        return t * scale.view(1, -1, *([1] * (t.dim() - 2)))
    return AffineSource(src.a, abs_terms)


def shapley_product(func: Callable, args: tuple, kwargs: dict, i: int, j: int,
                     a_ref: Tensor, b_ref: Tensor) -> Tensor:
    """``a * b`` (any bilinear ``func``) with both factors varying, differentiated as
    ``da (b + b')/2 + (a + a')/2 db`` for the references ``a'``, ``b'``. Cost: three products."""
    a, b = args[i], args[j]
    with torch.no_grad():
        out = func(*args, **kwargs)
        a_mid, b_mid = (a + a_ref) / 2, (b + b_ref) / 2

    def call(u: Tensor, v: Tensor) -> Tensor:
        new = list(args)
        new[i], new[j] = u, v
        return func(*new, **kwargs)
    return out + call(a - a.detach(), b_mid) + call(a_mid, b - b.detach())


@dataclass
class Pair:
    """A value on the input run (``t``, multipliers flow back through it) and its reference."""

    t: Tensor
    ref: Tensor

    def map(self, f: Callable[..., Tensor], *args, **kwargs) -> Pair:
        """A linear map applied to both."""
        return Pair(f(self.t, *args, **kwargs), f(self.ref, *args, **kwargs))

    def __add__(self, other: Pair) -> Pair:
        return Pair(self.t + other.t, self.ref + other.ref)

    def __sub__(self, other: Pair) -> Pair:
        return Pair(self.t - other.t, self.ref - other.ref)


def scaled(p: Pair, q: Pair) -> Pair:
    """``p * q`` for a scale factor ``q``, split as ``dp q + p' dq`` where ``q <= q'`` and
    ``dp q' + p dq`` elsewhere: exact either way, and the factor is taken at the end where it
    is smaller. A normaliser's ``q = 1/sqrt(v + eps)`` is huge where the variance ``v`` is tiny
    (a zero reference), and there ``p`` is tiny too, so both terms stay bounded; the Shapley
    split would weigh ``dp`` by the huge mean of ``q`` and cancel (measured: float32 relative
    errors of 1e-4 on a TransformerEncoder, 2e-7 in float64 on RMSNorm at a zero reference)."""
    at_input = q.t.detach() <= q.ref
    q_end = torch.where(at_input, q.t.detach(), q.ref)
    p_other = torch.where(at_input, p.ref, p.t.detach())
    with torch.no_grad():
        out = p.t * q.t
    return Pair(out + (p.t - p.t.detach()) * q_end + p_other * (q.t - q.t.detach()),
                p.ref * q.ref)
