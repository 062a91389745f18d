"""DeepLIFT by operation: a ``TorchFunctionMode`` that gives every op its multiplier rule.

The model runs once on the batch ``[x; x']`` (input rows first, reference rows second) while
``DeepLiftMode`` watches every torch call. Calls that touch a *varying* tensor (one that
requires grad, i.e. depends on the attributed input) are sorted into:

* linear ops (``LINEAR``, ``FIRST_ONLY``, one varying factor of a ``PRODUCT``): run as they are.
  Autograd's chain rule through a linear map already is DeepLIFT's linear rule on differences.
* elementwise nonlinearities ``y = f(z)``: a custom autograd function whose backward multiplies
  the incoming gradient by the multiplier ``m = dy / dz`` (Rescale), or by RevealCancel's
  ``m+``/``m-`` when ``z`` comes straight from a linear / convolution layer (optionally through
  eval batch norm).
* max pooling: each window's ``dy`` is credited to one input (see ``_MaxPool``).
* the product of two varying tensors ``a * b`` (also ``matmul``): the Shapley split
  ``d(ab) = da (b + b') / 2 + (a + a') / 2 db``, exact for any bilinear map.
* anything else: ``NoDeepLiftRule`` naming the op, or with ``fallback`` its plain gradient and
  a warning.

Only the input rows carry gradient: the backward of every rule returns zero for the reference
rows, so ``grad[:n]`` at the input is the multiplier of the target and no example ever mixes
with another. Each rule keeps summation-to-delta exactly (up to rounding), except where a
difference is below ``EPS``: there the gradient stands in, with an error below ``EPS`` times
the local slope.
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
from torch.utils._pytree import tree_leaves

#: Below this absolute difference a multiplier ``dy / dz`` is replaced by the gradient.
EPS = 1e-7


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
    "expand_as", "repeat", "tile", "narrow", "select", "split", "chunk", "unbind", "sum", "mean",
    "cumsum", "flip", "roll", "clone", "to", "type_as", "float", "double", "__getitem__",
    "__setitem__", "index_select", "gather", "masked_fill", "where", "diagonal", "avg_pool1d",
    "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d", "adaptive_avg_pool2d",
    "adaptive_avg_pool3d", "pad", "pixel_shuffle", "pixel_unshuffle", "interpolate", "dropout",
    "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout",
)
LINEAR_GETTERS = {"T", "mT"}
# Linear in the first argument while the others (weights, divisors, statistics) are constant.
LINEAR_LAYERS = _ops("linear", "conv1d", "conv2d", "conv3d")
FIRST_ONLY = LINEAR_LAYERS | _ops(
    "div", "div_", "divide", "true_divide", "__truediv__", "__itruediv__", "batch_norm",
    "conv_transpose1d", "conv_transpose2d", "conv_transpose3d")
# Bilinear: linear while one factor is constant; two varying factors take the Shapley split
# (out-of-place forms only).
PRODUCT = _ops("mul", "multiply", "__rmul__", "matmul", "__matmul__", "__rmatmul__", "mm", "bmm")
ONE_FACTOR = _ops("mul_", "__imul__", "einsum", "tensordot")
# Make constants shaped like their argument.
CONSTRUCTORS = _ops("zeros_like", "ones_like", "empty_like", "full_like", "new_zeros",
                    "new_ones", "new_empty", "new_full", "new_tensor")
# Refuse a functional call that samples or mixes examples (training-mode dropout, batch norm).
TRAINING_FLAG = _ops("batch_norm", "dropout", "dropout1d", "dropout2d", "dropout3d",
                     "alpha_dropout", "feature_alpha_dropout")

_ELEMENTWISE_NAMES = (
    "relu", "relu6", "hardtanh", "clamp", "clip", "clamp_min", "clamp_max", "leaky_relu", "elu",
    "gelu", "silu", "hardswish", "hardsigmoid", "softplus", "sigmoid", "tanh",
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


def _half(t: Tensor, n: int) -> tuple[Tensor, Tensor]:
    return t[:n], t[n:]


def _input_rows_only(g: Tensor, grad_x: Tensor) -> Tensor:
    """A gradient for both halves: ``grad_x`` on the input rows, 0 on the reference rows."""
    out = torch.zeros_like(g)
    out[:len(grad_x)] = grad_x
    return out


def _derivative(f: Callable[[Tensor], Tensor], z: Tensor) -> Tensor:
    with torch.enable_grad():
        t = z.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(f(t).sum(), t)
    return g


def rescale_multiplier(f: Callable[[Tensor], Tensor], z: Tensor, dz: Tensor,
                       dy: Tensor) -> Tensor:
    """Rescale ``m = dy / dz`` elementwise, for ``dy = f(z) - f(z - dz)``; the gradient
    ``f'(z)`` where ``|dz| < EPS`` (``f`` must act elementwise). Cost: a few elementwise
    passes, plus a backward of ``f`` on the elements with a small difference."""
    m = dy / dz
    small = dz.abs() < EPS
    if small.any():
        m[small] = _derivative(f, z[small])
    return m


def reveal_cancel_multipliers(f: Callable[[Tensor], Tensor], z: Tensor, y: Tensor, r: Tensor,
                              n: int) -> tuple[Tensor, Tensor]:
    """RevealCancel ``(m+, m-)`` of ``y = f(z)`` whose difference ``dz`` is a sum of terms with
    ``dz+ - dz- = r`` (``r``: sum of the terms' absolute values), so ``dz+- = (dz +- r) / 2``.

        dy+ = [f(z' + dz+) - f(z')] / 2 + [f(z) - f(z' + dz-)] / 2,   m+ = dy+ / dz+
        dy- = [f(z' + dz-) - f(z')] / 2 + [f(z) - f(z' + dz+)] / 2,   m- = dy- / dz-

    ``dy+ + dy- = f(z) - f(z')``, so ``dy-`` is computed as that minus ``dy+``. Where a part is
    below ``EPS`` its multiplier is Rescale's. Cost: two extra evaluations of ``f`` and about
    twenty elementwise passes on the input rows.
    """
    (zx, zr), (yx, yr) = _half(z, n), _half(y, n)
    dz, dy = zx - zr, yx - yr
    dpos = (dz + r).mul_(0.5)
    dneg = dz - dpos
    dy_pos = (f(zr + dpos) - yr).add_(yx).sub_(f(zr + dneg)).mul_(0.5)
    m_pos, m_neg = dy_pos / dpos, (dy - dy_pos).div_(dneg)
    for m, part in ((m_pos, dpos), (m_neg, dneg)):
        small = part.abs() < EPS
        if small.any():
            m[small] = rescale_multiplier(f, zx[small], dz[small], dy[small])
    return m_pos, m_neg


class _Rescale(torch.autograd.Function):
    """``y = f(z)`` on both halves; backward ``g * m`` on the input rows, 0 on the reference."""

    @staticmethod
    def forward(ctx, z: Tensor, f: Callable, n: int) -> Tensor:
        y = f(z)
        ctx.save_for_backward(rescale_multiplier(f, z[:n], z[:n] - z[n:], y[:n] - y[n:]))
        return y

    @staticmethod
    def backward(ctx, g: Tensor):
        (m,) = ctx.saved_tensors
        return _input_rows_only(g, g[:len(m)] * m), None, None


class _RevealCancel(torch.autograd.Function):
    """``y = f(z)``; ``r = |W| |da|`` is a second input that routes the split backward.

    The multiplier of a preceding input ``a_j`` is ``sum_i W_ij m_i(sign of W_ij da_j)``, which
    equals ``W^T (g (m+ + m-) / 2) + sign(da) |W|^T (g (m+ - m-) / 2)``: the first part flows
    back through ``z`` (the layer's own backward), the second through ``r``. A term that is
    exactly zero (``da_j = 0``, where ``sign`` is 0) gets the mean ``(m+ + m-) / 2``.
    """

    @staticmethod
    def forward(ctx, z: Tensor, r: Tensor, f: Callable, n: int) -> Tensor:
        y = f(z)
        m_pos, m_neg = reveal_cancel_multipliers(f, z, y, r, n)
        ctx.save_for_backward((m_pos + m_neg) / 2, (m_pos - m_neg) / 2)
        return y

    @staticmethod
    def backward(ctx, g: Tensor):
        m_mean, m_half_diff = ctx.saved_tensors
        gx = g[:len(m_mean)]
        return _input_rows_only(g, gx * m_mean), gx * m_half_diff, None, None


class _MaxPool(torch.autograd.Function):
    """Max pooling. Each window's ``dy = max(x) - max(x')`` is credited to one element: the
    argmax at the input if the max rose, the argmax at the reference if it fell (Captum's
    partition). That element changed at least as much, ``|dx| >= |dy|`` with the same sign, so
    its multiplier ``dy / dx`` lies in [0, 1], needs no ``EPS`` and summation-to-delta holds
    exactly per window."""

    @staticmethod
    def forward(ctx, z: Tensor, pool: Callable, k: int, n: int):
        y, idx = pool(z)
        flat_z, flat_y, flat_i = z.flatten(-k), y.flatten(-k), idx.flatten(-k)
        dz = flat_z[:n] - flat_z[n:]
        dy = flat_y[:n] - flat_y[n:]
        i_sel = torch.where(dy >= 0, flat_i[:n], flat_i[n:])
        dz_sel = dz.gather(-1, i_sel)
        ctx.save_for_backward(i_sel, dy / torch.where(dz_sel == 0, 1, dz_sel))
        ctx.shape, ctx.k, ctx.n = z.shape, k, n
        ctx.mark_non_differentiable(idx)
        return y, idx

    @staticmethod
    def backward(ctx, g: Tensor, _g_idx: Tensor):
        i_sel, w = ctx.saved_tensors
        shape = (ctx.n, *ctx.shape[1:])
        grad = g.new_zeros(shape).flatten(-ctx.k)
        grad.scatter_add_(-1, i_sel, g.flatten(-ctx.k)[:ctx.n] * w)
        return _input_rows_only(g.new_empty(ctx.shape), grad.view(shape)), None, None, None


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


def _shapley_product(func: Callable, args: tuple, kwargs: dict, i: int, j: int, n: int) -> Tensor:
    """``a * b`` (any bilinear ``func``) with both factors varying, input rows differentiated as
    ``da (b + b')/2 + (a + a')/2 db``. Cost: three products on the input rows."""
    a, b = args[i], args[j]
    with torch.no_grad():
        out = func(*args, **kwargs)
        a_mid, b_mid = (a[:n] + a[n:]) / 2, (b[:n] + b[n:]) / 2

    def call(u: Tensor, v: Tensor) -> Tensor:
        new = list(args)
        new[i], new[j] = u, v
        return func(*new, **kwargs)
    ax, bx = a[:n], b[:n]
    out_x = out[:n] + call(ax - ax.detach(), b_mid) + call(a_mid, bx - bx.detach())
    return torch.cat([out_x, out[n:]])


class DeepLiftMode(TorchFunctionMode):
    """Apply DeepLIFT rules to every torch call on a batch ``[x; x']`` of ``2 n`` rows.

    ``rule``: "rescale" or "revealcancel". ``fallback``: use the plain gradient (with a
    warning) for ops without a rule instead of raising. ``counts`` tells how often each rule
    was applied (``fallback:<op>`` for ops that fell back).
    """

    def __init__(self, n: int, rule: str = "rescale", fallback: bool = False):
        super().__init__()
        self.n, self.rule, self.fallback = n, rule, fallback
        self.counts: Counter[str] = Counter()
        self._sources: dict[int, tuple[weakref.ref, AffineSource]] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        varying = [t for t in tree_leaves((args, kwargs)) if isinstance(t, Tensor)
                   and t.requires_grad]
        if not varying or func in CONSTRUCTORS:
            return func(*args, **kwargs)
        if not torch.is_grad_enabled():
            return self._unsupported(func, args, kwargs, "runs with autograd off (in no_grad or a "
                                     "custom autograd.Function)")
        if func in TRAINING_FLAG and _bound(func, args, kwargs).get("training"):
            raise NoDeepLiftRule(f"{op_name(func)} runs in training mode: its output is random "
                                 f"or mixes examples; call model.eval()")
        if func in ELEMENTWISE:
            return self._elementwise(func, args, kwargs, varying)
        if func in MAXPOOL:
            return self._maxpool(func, args, kwargs, varying)
        if func in PRODUCT and len(varying) == 2:
            factors = [k for k, t in enumerate(args) if any(t is v for v in varying)]
            if len(factors) == 2:
                self._check_batch(func, varying)
                self.counts["product"] += 1
                return _shapley_product(func, args, kwargs, *factors, self.n)
        linear = (func in LINEAR
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

    def _unsupported(self, func, args, kwargs, why: str, out=None):
        name = op_name(func)
        if not self.fallback:
            raise NoDeepLiftRule(
                f"DeepLIFT has no rule for {name}: on a tensor that depends on the input it "
                f"{why}. Explain a computation without it (e.g. logits instead of softmax "
                f"probabilities), or pass allow_gradient_fallback=True to use its plain "
                f"gradient (summation-to-delta then fails there)")
        warnings.warn(f"DeepLIFT: no rule for {name}; using its gradient (summation-to-delta "
                      f"may fail)", stacklevel=3)
        self.counts[f"fallback:{name}"] += 1
        return func(*args, **kwargs) if out is None else out

    def _check_batch(self, func, tensors: list[Tensor]) -> None:
        for t in tensors:
            if t.dim() == 0 or t.shape[0] != 2 * self.n:
                raise NoDeepLiftRule(
                    f"{op_name(func)} gets a tensor of shape {tuple(t.shape)} whose first "
                    f"dimension is not the batch ({2 * self.n} rows: inputs and references); "
                    f"DeepLIFT's rules need the batch first on every nonlinearity")

    def _single_first(self, func, args, varying) -> None:
        if len(varying) != 1 or not args or varying[0] is not args[0]:
            raise NoDeepLiftRule(f"{op_name(func)} has a varying argument other than its input; "
                                 f"DeepLIFT has no rule for that")
        self._check_batch(func, varying)

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
        if source is None:
            self.counts["rescale"] += 1
            y = _Rescale.apply(z, f, self.n)
        else:
            self.counts["revealcancel"] += 1
            da = source.a[:self.n] - source.a[self.n:].detach()
            y = _RevealCancel.apply(z, source.abs_terms(da.abs()), f, self.n)
        return z.copy_(y) if in_place else y

    def _maxpool(self, func, args, kwargs, varying):
        self._single_first(func, args, varying)
        pool, k = MAXPOOL[func]
        with_indices = pool is func or bool(_bound(pool, args, kwargs).get("return_indices"))
        self.counts["maxpool"] += 1
        y, idx = _MaxPool.apply(args[0], lambda t: pool(t, *args[1:], **kwargs), k, self.n)
        return (y, idx) if with_indices else y

    def _source_of(self, z: Tensor) -> AffineSource | None:
        entry = self._sources.get(id(z))
        return entry[1] if entry is not None and entry[0]() is z else None

    def _track_source(self, func, args, kwargs, out) -> None:
        """Remember outputs of linear layers (and batch norm on them) for RevealCancel."""
        if func in LINEAR_LAYERS and len(args) >= 2 and "weight" not in kwargs:
            src = _linear_source(func, args, kwargs)
        elif func is F.batch_norm and (prev := self._source_of(args[0])) is not None:
            src = _batch_norm_source(prev, _bound(func, args, kwargs))
        else:
            return
        key = id(out)
        self._sources[key] = (weakref.ref(out, lambda _, k=key: self._sources.pop(k, None)), src)


def _is_getter(func) -> bool:
    return type(func).__name__ == "method-wrapper" and func.__name__ == "__get__"

