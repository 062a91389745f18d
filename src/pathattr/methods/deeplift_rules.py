"""DeepLIFT by operation: a ``TorchFunctionMode`` that gives every op its multiplier rule.

The model runs twice under ``DeepLiftMode``: first on the references ``x'`` (``mode.reference()``),
where each rule records the reference values it will need on a tape, then on the inputs ``x``
(``mode.inputs()``), where each rule takes its entry from the tape in call order. Only the
second run is differentiated, so the backward runs on the input rows alone. Calls that touch a
*varying* tensor (one that requires grad, i.e. depends on the attributed signal) are sorted into:

* linear ops (``LINEAR``, ``FIRST_ONLY``, one varying factor of a ``PRODUCT``): run as they are.
  Autograd's chain rule through a linear map already is DeepLIFT's linear rule on differences.
* elementwise nonlinearities ``y = f(z)``: a custom autograd function whose backward multiplies
  the incoming gradient by the multiplier ``m = dy / dz`` (Rescale), or by RevealCancel's
  ``m+``/``m-`` when ``z`` comes straight from a linear / convolution layer (optionally through
  eval batch norm).
* max pooling: each window's ``dy`` is credited to one input (see ``_MaxPool``).
* the product of two varying tensors ``a * b`` (also ``matmul``, ``bmm``, ``mv``, ``einsum``):
  the Shapley split ``d(ab) = da (b + b') / 2 + (a + a') / 2 db``, exact for any bilinear map.
  ``addmm``-style ops run as ``beta * input + alpha * (a @ b)``, a varying divisor as a product
  with its reciprocal.
* softmax, log_softmax, logsumexp and layer / RMS / group norm (rules that see the op's input
  and reference at once), and fused attention and recurrent kernels (run as their
  decomposition under this mode): ``deeplift_composite``.
* anything else: ``NoDeepLiftRule`` naming the op, or with ``fallback`` its plain gradient and
  a warning.

Each example is paired with its own reference row, so no example ever mixes with another. Each
rule keeps summation-to-delta exactly (up to rounding), except where a difference is too small
to divide by (see ``rescale_multiplier``): there the gradient stands in. A model
whose two runs call different operations (data-dependent control flow) is refused.
"""

from __future__ import annotations

import functools
import inspect
import warnings
import weakref
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves, tree_map

#: Below this absolute difference RevealCancel splits a change term by term.
EPS = 1e-7
#: ``dy`` counts as resolved above this many units of rounding of ``|y| + |y'|``.
RESOLVED = 64


class NoDeepLiftRule(RuntimeError):
    """An operation on the attributed signal that DeepLIFT has no rule for."""


def _ops(*names: str) -> set:
    return {getattr(ns, n) for ns in (torch, Tensor, F) for n in names if hasattr(ns, n)}


# Linear (or affine) in all tensor arguments jointly; any number of them may vary.
LINEAR = _ops(
    "add", "add_", "__radd__", "__iadd__", "sub", "sub_", "subtract", "__rsub__", "__isub__",
    "neg", "negative", "__neg__", "__pos__", "cat", "concat", "concatenate", "stack", "hstack",
    "vstack", "flatten", "unflatten", "view", "view_as", "reshape", "reshape_as", "squeeze",
    "unsqueeze", "permute", "transpose", "swapaxes", "movedim", "t", "contiguous", "expand",
    "expand_as", "repeat", "repeat_interleave", "tile", "narrow", "select", "split", "chunk",
    "unbind", "sum", "mean",
    "cumsum", "flip", "roll", "clone", "to", "type", "type_as", "float", "double", "half",
    "bfloat16", "__getitem__",
    "__setitem__", "index_select", "gather", "masked_fill", "where", "diagonal", "avg_pool1d",
    "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d", "adaptive_avg_pool2d",
    "adaptive_avg_pool3d", "pad", "pixel_shuffle", "pixel_unshuffle", "interpolate", "dropout",
    "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout",
    # gathers and scatters by constant indices (message passing: a node's messages summed)
    "scatter_add", "scatter_add_", "index_add", "index_add_", "index_put", "index_put_",
    "index_copy", "index_copy_", "masked_scatter", "masked_scatter_", "masked_fill_",
    "index_fill", "index_fill_", "take", "take_along_dim", "masked_select",
)
LINEAR_GETTERS = {"T", "mT"}


def _reduce_arg(args: tuple, kwargs: dict, position: int) -> object:
    return kwargs.get("reduce", args[position] if len(args) > position else None)


# Linear only for some arguments: a scatter that sums or averages (``amax`` needs a max rule).
LINEAR_IF = {
    **dict.fromkeys(_ops("scatter_reduce", "scatter_reduce_", "index_reduce", "index_reduce_"),
                    lambda args, kwargs: _reduce_arg(args, kwargs, 4) in ("sum", "mean")),
    **dict.fromkeys(_ops("scatter", "scatter_"),
                    lambda args, kwargs: kwargs.get("reduce") in (None, "add")),
}
# Linear in the first argument while the others (weights, divisors, statistics) are constant.
LINEAR_LAYERS = _ops("linear", "conv1d", "conv2d", "conv3d")
FIRST_ONLY = LINEAR_LAYERS | _ops(
    "div", "div_", "divide", "true_divide", "__truediv__", "__itruediv__", "batch_norm",
    "conv_transpose1d", "conv_transpose2d", "conv_transpose3d")
# Bilinear: linear while one factor is constant; two varying factors take the Shapley split
# (out-of-place forms only).
PRODUCT = _ops("mul", "multiply", "__rmul__", "matmul", "__matmul__", "__rmatmul__", "mm", "bmm",
               "mv", "einsum")
ELEMENTWISE_PRODUCT = _ops("mul", "multiply", "__rmul__")
ONE_FACTOR = _ops("mul_", "__imul__", "tensordot")
# ``beta * input + alpha * (a @ b)``: run as that sum and product, so two varying factors get
# the product's rule (HuggingFace's Conv1D is ``addmm(bias, x, W)``, BLOOM's ALiBi
# ``alibi.baddbmm(batch1=q, batch2=k)``): the product and the names of its three operands.
AFFINE_PRODUCT = {
    **dict.fromkeys((torch.addmm, Tensor.addmm), (torch.matmul, ("input", "mat1", "mat2"))),
    **dict.fromkeys((torch.baddbmm, Tensor.baddbmm),
                    (torch.matmul, ("input", "batch1", "batch2"))),
    **dict.fromkeys((torch.addmv, Tensor.addmv), (torch.mv, ("input", "mat", "vec"))),
}
# Matrix products with a constant factor: linear layers written as ``x @ W.T`` (Falcon), whose
# terms RevealCancel splits like ``F.linear``'s.
MATMUL = _ops("matmul", "mm", "bmm")
# Outputs that only take the shape, dtype or device of their second argument: constant when
# the first is.
SHAPED_LIKE = {Tensor.expand_as, Tensor.view_as, Tensor.reshape_as, Tensor.type_as}
# Elementwise ops whose output scales what it multiplies (``x * rsqrt(mean(x^2) + eps)``, a
# hand-written RMSNorm; ``a / b`` runs as ``a * reciprocal(b)``): the product of such a factor
# takes the split at the end where the factor is smaller (``deeplift_composite.scaled``).
SCALES = _ops("rsqrt", "reciprocal")
# ``a / b`` with a varying divisor: ``a * (1 / b)``.
DIVISION = _ops("div", "divide", "true_divide", "__truediv__", "__rtruediv__")
# A constant copy of the signal (``_detach``).
DETACH = _ops("detach")
# Make constants shaped like their argument.
CONSTRUCTORS = _ops("zeros_like", "ones_like", "empty_like", "full_like", "new_zeros",
                    "new_ones", "new_empty", "new_full", "new_tensor")
# Refuse a functional call that samples or mixes examples (training-mode dropout, batch norm).
TRAINING_FLAG = _ops("batch_norm", "dropout", "dropout1d", "dropout2d", "dropout3d",
                     "alpha_dropout", "feature_alpha_dropout")

_ELEMENTWISE_NAMES = (
    "relu", "relu6", "hardtanh", "clamp", "clip", "clamp_min", "clamp_max", "leaky_relu", "elu",
    "gelu", "silu", "hardswish", "hardsigmoid", "softplus", "sigmoid", "tanh", "mish", "selu",
    "celu", "logsigmoid", "softsign", "tanhshrink", "exp", "exp2", "expm1", "log", "log2",
    "log10", "log1p", "sqrt", "rsqrt", "reciprocal", "abs", "erf", "erfc", "square", "pow",
    "__pow__", "__rpow__", "sin", "cos",
)


def _elementwise() -> dict:
    """Every spelling of each supported nonlinearity -> (out-of-place function, in-place?)."""
    table = {}
    for ns in (torch, Tensor, F):
        for name in _ELEMENTWISE_NAMES:
            if hasattr(ns, name):
                table[getattr(ns, name)] = (getattr(ns, name), False)
                if hasattr(ns, name + "_"):
                    table[getattr(ns, name + "_")] = (getattr(ns, name), True)
    return table


ELEMENTWISE = _elementwise()
# Max pooling: the variant that also returns argmax indices, and its number of spatial dims.
MAXPOOL = {
    F.max_pool1d: (F.max_pool1d_with_indices, 1), F.max_pool2d: (F.max_pool2d_with_indices, 2),
    F.max_pool3d: (F.max_pool3d_with_indices, 3),
    F.max_pool1d_with_indices: (F.max_pool1d_with_indices, 1),
    F.max_pool2d_with_indices: (F.max_pool2d_with_indices, 2),
    F.max_pool3d_with_indices: (F.max_pool3d_with_indices, 3),
    F.adaptive_max_pool1d: (F.adaptive_max_pool1d_with_indices, 1),
    F.adaptive_max_pool2d: (F.adaptive_max_pool2d_with_indices, 2),
    F.adaptive_max_pool1d_with_indices: (F.adaptive_max_pool1d_with_indices, 1),
    F.adaptive_max_pool2d_with_indices: (F.adaptive_max_pool2d_with_indices, 2),
}


def op_name(func: Callable) -> str:
    """A readable name for a torch callable: ``torch.sigmoid``, ``Tensor.softmax``, ..."""
    if type(func).__name__ == "method-wrapper" and func.__name__ == "__get__":
        return f"Tensor.{func.__self__.__name__}"
    qual = getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func))
    short = qual.rsplit(".", 1)[-1]
    if qual.startswith("_VariableFunctionsClass."):
        return f"torch.{short}"
    if qual.startswith(("TensorBase.", "Tensor.")):
        return f"Tensor.{short}"
    if getattr(func, "__module__", "") in ("torch.nn.functional", "torch._C._nn"):
        return f"torch.nn.functional.{short}"
    return f"{getattr(func, '__module__', '') or ''}.{qual}".lstrip(".")


@functools.cache
def _signature(func: Callable) -> inspect.Signature | None:
    try:
        return inspect.signature(func)
    except (TypeError, ValueError):
        return None


def _bound(func: Callable, args: tuple, kwargs: dict) -> dict:
    """Arguments by name where ``func`` has a Python signature, else ``{}``."""
    sig = _signature(func)
    if sig is None:
        return {}
    try:
        return dict(sig.bind(*args, **kwargs).arguments)
    except TypeError:
        return {}


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


class _RevealCancel(torch.autograd.Function):
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


class _MaxPool(torch.autograd.Function):
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


def _linear_source(func: Callable, args: tuple, kwargs: dict) -> AffineSource:
    """The ``AffineSource`` of ``F.linear`` / ``F.convNd(a, W, b, ...)`` called positionally."""
    a, weight, rest = args[0], args[1], args[3:]
    options = {k: v for k, v in kwargs.items() if k != "bias"}
    return AffineSource(a, lambda u: func(u, weight.abs(), None, *rest, **options))


def _batch_norm_source(src: AffineSource, bound: dict) -> AffineSource:
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


class _Context:
    """What a custom ``autograd.Function``'s ``forward`` may call on ``ctx`` when it runs as
    plain code (nothing is saved: the rules build their own backward)."""

    needs_input_grad: tuple = ()
    materialize_grads = True

    def save_for_backward(self, *tensors):
        self.saved_tensors = tensors

    def mark_dirty(self, *tensors):
        pass

    def mark_non_differentiable(self, *tensors):
        pass

    def set_materialize_grads(self, value: bool):
        pass


_ORIGINAL_APPLY = torch.autograd.Function.__dict__["apply"]


class _ForwardOfCustomFunctions:
    """While a ``DeepLiftMode`` is active, a model's own ``autograd.Function`` (BLOOM's GeLU,
    fused activations) runs its ``forward`` as ordinary differentiable code, so each op inside
    gets its DeepLIFT rule; its hand-written ``backward`` (a gradient, which DeepLIFT replaces by
    multipliers anyway) is not used. ``torch``'s own Functions (backward hooks) and pathattr's
    rules run as they are. ``Function.apply`` is swapped only while a mode is entered."""

    modes: list = []  # the entered modes, innermost last (decompositions re-enter)

    @classmethod
    def enter(cls, mode) -> None:
        if not cls.modes:
            torch.autograd.Function.apply = classmethod(_apply_as_forward)
        cls.modes.append(mode)

    @classmethod
    def exit(cls) -> None:
        cls.modes.pop()
        if not cls.modes:
            torch.autograd.Function.apply = _ORIGINAL_APPLY


def _apply_as_forward(fn_cls, *args, **kwargs):
    own = fn_cls.__module__.startswith(("torch.", "pathattr."))
    varying = any(isinstance(t, Tensor) and t.requires_grad for t in tree_leaves((args, kwargs)))
    if own or not varying or not torch.is_grad_enabled() or not _ForwardOfCustomFunctions.modes:
        return _ORIGINAL_APPLY.__func__(fn_cls, *args, **kwargs)
    _ForwardOfCustomFunctions.modes[-1].counts["custom Function forward"] += 1
    if fn_cls.setup_context is not torch.autograd.Function.setup_context:
        return fn_cls.forward(*args, **kwargs)  # the forward takes no ctx
    return fn_cls.forward(_Context(), *args, **kwargs)


@dataclass
class _Entry:
    """What a rule recorded on the reference run: the op, its varying input's shape, and the
    reference tensors with their version counters (to detect a later in-place change)."""

    func: Callable
    shape: tuple[int, ...]
    tensors: tuple[Tensor, ...]
    versions: tuple[int, ...]


class DeepLiftMode(TorchFunctionMode):
    """Apply DeepLIFT rules to every torch call: enter ``reference()`` and run the model on the
    references, then enter ``inputs()`` and run it on the inputs (as many rows each, row ``i``
    of one paired with row ``i`` of the other).

    ``rule``: "rescale" or "revealcancel". ``fallback``: use the plain gradient (with a
    warning) for ops without a rule instead of raising. ``counts`` tells how often each rule
    was applied on the input run (``fallback:<op>`` for ops that fell back). ``widen``: run a
    half-precision model's ops in float32 (its weights upcast exactly, one op at a time, and
    every request for a half dtype read as float32), so multipliers neither overflow (fp16: a
    norm's ``rsqrt`` secant of 7e4) nor round to 3 digits (bf16); the outputs are then the
    same weights' float32 outputs.
    """

    def __init__(self, rule: str = "rescale", fallback: bool = False, widen: bool = False):
        super().__init__()
        self.rule, self.fallback, self.widen = rule, fallback, widen
        self.counts: Counter[str] = Counter()
        self._sources: dict[int, tuple[weakref.ref, AffineSource]] = {}
        self._scales: dict[int, tuple[weakref.ref, bool]] = {}
        self._tape: list[_Entry] = []
        self._next = 0
        self._recording = True
        #: detached values replaced by the reference run's in the last input run (``_detach``)
        self.substituted = 0
        from .deeplift_composite import COMPOSITES, DECOMPOSITIONS

        self._composites, self._decompositions = COMPOSITES, DECOMPOSITIONS

    def __enter__(self):
        _ForwardOfCustomFunctions.enter(self)
        return super().__enter__()

    def __exit__(self, *exc):
        try:
            return super().__exit__(*exc)
        finally:
            _ForwardOfCustomFunctions.exit()

    def reference(self) -> DeepLiftMode:
        """Enter for the run on the references: rules record what they need."""
        self._recording, self._tape, self._sources = True, [], {}
        return self

    def inputs(self) -> DeepLiftMode:
        """Enter for the run on the inputs: rules consume the reference tape in call order."""
        self._recording, self._next, self._sources, self._scales = False, 0, {}, {}
        self.counts.clear()
        self.substituted = 0
        return self

    def check_consumed(self) -> None:
        """Raise if the input run made fewer rule calls than the reference run."""
        if self._next != len(self._tape):
            self._diverged(f"stopped after {self._next} of the reference run's "
                           f"{len(self._tape)} nonlinear calls")

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.widen:
            if func in NARROWING and args and isinstance(args[0], Tensor) and \
                    args[0].dtype == torch.float32:
                return args[0]
            args, kwargs = tree_map(_widened, (args, kwargs))
        varying = [t for t in tree_leaves((args, kwargs)) if isinstance(t, Tensor)
                   and t.requires_grad]
        if not varying or func in CONSTRUCTORS or (
                func in SHAPED_LIKE and args and not getattr(args[0], "requires_grad", True)):
            return func(*args, **kwargs)
        if not torch.is_grad_enabled():
            out = func(*args, **kwargs)
            # What a user's full backward hook does to a module's inputs and outputs: an
            # identity autograd.Function, which reads ``requires_grad`` and re-wraps each tensor
            # it returns as ``t.view_as(t)``. Both leave the values, so DeepLIFT's multipliers
            # pass through the hook unchanged.
            if not any(isinstance(t, Tensor) for t in tree_leaves(out)):
                return out
            if func is Tensor.view_as and len(args) == 2 and args[0] is args[1]:
                if self.rule == "revealcancel":
                    self._track_source(func, args, kwargs, out)
                return out
            return self._unsupported(func, args, kwargs, "runs with autograd off (in no_grad or a "
                                     "custom autograd.Function)", out)
        if func in DETACH:
            return self._detach(func, args, kwargs)
        if func in TRAINING_FLAG and _bound(func, args, kwargs).get("training"):
            raise NoDeepLiftRule(f"{op_name(func)} runs in training mode: its output is random "
                                 f"or mixes examples; call model.eval()")
        if func in self._composites:
            return self._composite(func, args, kwargs, varying)
        if func in self._decompositions:
            with self:  # the kernel's own ops, each under its rule
                return self._decompositions[func](*args, **kwargs)
        if func in AFFINE_PRODUCT and (operands := _affine_operands(func, args, kwargs)):
            (base, a, b), beta, alpha = operands
            with self:
                prod = AFFINE_PRODUCT[func][0](a, b)
                # multiplying by 1 would hide the product from RevealCancel's source tracking
                return (base if beta == 1 else beta * base) + (prod if alpha == 1 else alpha * prod)
        if func in DIVISION and not (len(varying) == 1 and args and varying[0] is args[0]
                                     and func is not Tensor.__rtruediv__):
            if kwargs.get("rounding_mode") is not None:
                return self._unsupported(func, args, kwargs, "rounds (div with rounding_mode)")
            num, den = (args[1], args[0]) if func is Tensor.__rtruediv__ else args[:2]
            with self:
                return torch.mul(num, torch.reciprocal(den))
        if func is torch.einsum and len(args) == 2 and isinstance(args[1], (list, tuple)):
            args = (args[0], *args[1])
        if func in ELEMENTWISE:
            return self._elementwise(func, args, kwargs, varying)
        if func in MAXPOOL:
            return self._maxpool(func, args, kwargs, varying)
        if func in PRODUCT and len(varying) == 2:
            factors = [k for k, t in enumerate(args) if any(t is v for v in varying)]
            if len(factors) == 2:
                a_ref, b_ref = self._tensors(func, args[factors[0]], args[factors[0]],
                                             args[factors[1]])
                if self._recording:
                    return func(*args, **kwargs)
                a, b = (args[k] for k in factors)
                if func in ELEMENTWISE_PRODUCT and not kwargs and (
                        self._is_scale(a) or self._is_scale(b)):
                    self.counts["scaled product"] += 1
                    p, q = ((a, a_ref), (b, b_ref)) if self._is_scale(b) else \
                        ((b, b_ref), (a, a_ref))
                    return scaled(Pair(*p), Pair(*q)).t
                self.counts["product"] += 1
                return shapley_product(func, args, kwargs, *factors, a_ref, b_ref)
        linear = (func in LINEAR
                  or (func in LINEAR_IF and LINEAR_IF[func](args, kwargs))
                  or (func in FIRST_ONLY and len(varying) == 1 and args and varying[0] is args[0])
                  or (func in PRODUCT | ONE_FACTOR and len(varying) == 1)
                  or (_is_getter(func) and func.__self__.__name__ in LINEAR_GETTERS))
        out = func(*args, **kwargs)
        if not linear:
            if not any(isinstance(t, Tensor) for t in tree_leaves(out)):
                return out  # metadata (shape, dim, item): no tensor flows on
            return self._unsupported(func, args, kwargs, "is not a supported nonlinearity and "
                                     "is not known to be linear in the attributed signal", out)
        if any(isinstance(t, Tensor) and not t.requires_grad for t in tree_leaves(out)):
            return self._unsupported(func, args, kwargs, "turns the attributed signal into a "
                                     "constant", out)
        if self.rule == "revealcancel":
            self._track_source(func, args, kwargs, out)
        return out

    def _detach(self, func, args, kwargs):
        """A detached value of the signal (a softmax's max shift, PyG's ``softmax``): the same
        constant in both runs, the reference run's, so no difference hides in it. The caller
        then checks that the model's output is unchanged by it (``substituted``)."""
        if self._recording:
            return self._tensors(func, args[0], func(*args, **kwargs))[0]
        self.substituted += 1
        return self._tensors(func, args[0])[0]

    def _composite(self, func, args, kwargs, varying):
        """A rule that needs the op's input and its reference at once (``deeplift_composite``);
        only the input may vary (weights and options are constants)."""
        if len(varying) != 1 or varying[0] is not args[0]:
            raise NoDeepLiftRule(f"{op_name(func)} has a varying argument other than its input; "
                                 f"DeepLIFT has no rule for that")
        if self._recording:
            self._tensors(func, args[0], args[0])
            return func(*args, **kwargs)
        (z_ref,) = self._tensors(func, args[0])
        self.counts[op_name(func).rsplit(".", 1)[-1]] += 1
        return self._composites[func](args[0], z_ref, *args[1:], **kwargs)

    def _tensors(self, func, like: Tensor, *ref: Tensor) -> tuple[Tensor, ...]:
        """On the reference run record ``ref`` (detached) and return it; on the input run
        return the tensors recorded by the same call, checking that it is the same call."""
        if self._recording:
            kept = tuple(t.detach() for t in ref)
            self._tape.append(_Entry(func, tuple(like.shape), kept,
                                     tuple(t._version for t in kept)))
            return kept
        if self._next >= len(self._tape):
            self._diverged(f"calls {op_name(func)} after the reference run's last nonlinear call")
        entry = self._tape[self._next]
        self._next += 1
        if entry.func is not func or entry.shape != tuple(like.shape):
            self._diverged(f"calls {op_name(func)} on shape {tuple(like.shape)} where the "
                           f"reference run called {op_name(entry.func)} on shape {entry.shape}")
        if any(t._version != v for t, v in zip(entry.tensors, entry.versions)):
            raise NoDeepLiftRule(f"the model changed the input of {op_name(func)} in place after "
                                 f"calling it; DeepLIFT needs that value afterwards")
        return entry.tensors

    @staticmethod
    def _diverged(what: str):
        raise NoDeepLiftRule(f"the model ran different operations on the inputs than on the "
                             f"references: it {what}. DeepLIFT pairs each nonlinearity's input "
                             f"with its reference, so the model's control flow must not depend on "
                             f"its input values")

    def _unsupported(self, func, args, kwargs, why: str, out=None):
        name = op_name(func)
        if not self.fallback:
            raise NoDeepLiftRule(
                f"DeepLIFT has no rule for {name}: on a tensor that depends on the input it "
                f"{why}. Explain a computation without it (e.g. logits instead of softmax "
                f"probabilities), or pass allow_gradient_fallback=True to use its plain "
                f"gradient (summation-to-delta then fails there)")
        if not self._recording:
            warnings.warn(f"DeepLIFT: no rule for {name}; using its gradient "
                          f"(summation-to-delta may fail)", stacklevel=3)
            self.counts[f"fallback:{name}"] += 1
        return func(*args, **kwargs) if out is None else out

    def _single_first(self, func, args, varying) -> None:
        if len(varying) != 1 or not args or varying[0] is not args[0]:
            raise NoDeepLiftRule(f"{op_name(func)} has a varying argument other than its input; "
                                 f"DeepLIFT has no rule for that")

    def _elementwise(self, func, args, kwargs, varying):
        self._single_first(func, args, varying)
        if any(isinstance(t, Tensor) for t in tree_leaves((args[1:], kwargs))):
            return self._unsupported(func, args, kwargs, "has tensor-valued options (only "
                                     "elementwise functions with scalar options have a rule)")
        fn, in_place = ELEMENTWISE[func]
        bound = _bound(fn, args, kwargs)
        if "inplace" in bound:
            in_place = in_place or bool(bound["inplace"])
            options = {**dict(list(bound.items())[1:]), "inplace": False}

            def f(t: Tensor) -> Tensor:
                return fn(t, **options)
        else:
            def f(t: Tensor) -> Tensor:
                return fn(t, *args[1:], **kwargs)
        z = args[0]
        source = self._source_of(z)
        if self._recording:
            # an in-place call overwrites z, which the input run still needs
            ref = (z.detach().clone() if in_place else z,
                   *(() if source is None else (source.a,)))
            self._tensors(func, z, *ref)
            return func(*args, **kwargs)
        z_ref, *a_ref = self._tensors(func, z)
        if source is None or not a_ref:
            self.counts["rescale"] += 1
            y = Rescale.apply(z, f, z_ref)
        else:
            self.counts["revealcancel"] += 1
            y = _RevealCancel.apply(z, source.abs_terms((source.a - a_ref[0]).abs()), f, z_ref)
        y = z.copy_(y) if in_place else y
        if fn in SCALES or (fn in (torch.pow, Tensor.pow) and isinstance(
                exponent := _bound(fn, args, kwargs).get("exponent"), (int, float))
                and exponent < 0):
            self._remember(self._scales, y, True)
        return y

    def _maxpool(self, func, args, kwargs, varying):
        self._single_first(func, args, varying)
        (z_ref,) = self._tensors(func, args[0], args[0])
        if self._recording:
            return func(*args, **kwargs)
        pool, k = MAXPOOL[func]
        with_indices = pool is func or bool(_bound(pool, args, kwargs).get("return_indices"))
        self.counts["maxpool"] += 1
        y, idx = _MaxPool.apply(args[0], lambda t: pool(t, *args[1:], **kwargs), k, z_ref)
        return (y, idx) if with_indices else y

    @staticmethod
    def _lookup(table: dict, z: Tensor):
        entry = table.get(id(z))
        return entry[1] if entry is not None and entry[0]() is z else None

    @staticmethod
    def _remember(table: dict, out: Tensor, value) -> None:
        """Key by ``id`` with a weak reference, so a freed tensor's id is not mistaken later."""
        key = id(out)
        table[key] = (weakref.ref(out, lambda _, k=key: table.pop(k, None)), value)

    def _source_of(self, z: Tensor) -> AffineSource | None:
        return self._lookup(self._sources, z)

    def _is_scale(self, z: Tensor) -> bool:
        return bool(self._lookup(self._scales, z))

    def _track_source(self, func, args, kwargs, out) -> None:
        """Remember outputs of linear layers (and batch norm on them, and identity re-wraps of
        them) for RevealCancel."""
        if func in LINEAR_LAYERS and len(args) >= 2 and "weight" not in kwargs:
            src = _linear_source(func, args, kwargs)
        elif func is F.batch_norm and (prev := self._source_of(args[0])) is not None:
            src = _batch_norm_source(prev, _bound(func, args, kwargs))
        elif func is Tensor.view_as and (prev := self._source_of(args[0])) is not None:
            src = prev  # the same values, re-wrapped (a backward hook's identity Function)
        elif func in MATMUL and len(args) == 2 and not kwargs and all(
                isinstance(t, Tensor) for t in args):
            if args[0].requires_grad and not args[1].requires_grad:
                w = args[1].abs()
                src = AffineSource(args[0], lambda u: func(u, w))
            elif args[1].requires_grad and not args[0].requires_grad:
                w = args[0].abs()
                src = AffineSource(args[1], lambda u: func(w, u))
            else:
                return
        elif func in (torch.add, Tensor.add) and len(args) == 2 and not kwargs:
            # a bias added to a linear map's output: the terms are the map's
            tracked = [self._source_of(t) for t in args if isinstance(t, Tensor)
                       and t.requires_grad]
            if len(tracked) != 1 or tracked[0] is None:
                return
            src = tracked[0]
        else:
            return
        self._remember(self._sources, out, src)


HALF = (torch.float16, torch.bfloat16)
NARROWING = {Tensor.half, Tensor.bfloat16}


def _widened(v):
    """A half-precision tensor or dtype as float32; anything else as it is."""
    if isinstance(v, Tensor) and v.dtype in HALF:
        return v.float()
    return torch.float32 if v in HALF else v


def _affine_operands(func, args: tuple, kwargs: dict):
    """``((input, a, b), beta, alpha)`` of an ``addmm``-style call, its operands given by
    position or by name; ``None`` for any other keyword (``out=``)."""
    names = AFFINE_PRODUCT[func][1]
    rest = dict(kwargs)
    operands = list(args[:3])
    for name in names[len(operands):]:
        if name not in rest:
            return None
        operands.append(rest.pop(name))
    if len(args) > 3 or set(rest) - {"beta", "alpha"}:
        return None
    return tuple(operands), rest.get("beta", 1), rest.get("alpha", 1)


def _is_getter(func) -> bool:
    return type(func).__name__ == "method-wrapper" and func.__name__ == "__get__"

