"""Which torch operations DeepLIFT treats how: products, elementwise nonlinearities, pooling,
division, ... (anything else is judged affine or not by ``linearity``) and ``NoDeepLiftRule``."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


class NoDeepLiftRule(RuntimeError):
    """An operation on the attributed signal that DeepLIFT has no rule for."""


def _ops(*names: str) -> set:
    return {getattr(ns, n) for ns in (torch, Tensor, F) for n in names if hasattr(ns, n)}


# Linear layers, whose outputs RevealCancel splits into positive and negative terms.
LINEAR_LAYERS = _ops("linear", "conv1d", "conv2d", "conv3d")
# Bilinear: two varying factors take the Shapley split (out-of-place forms only); one varying
# factor is affine and runs as it is.
PRODUCT = _ops("mul", "multiply", "__rmul__", "matmul", "__matmul__", "__rmatmul__", "mm", "bmm",
               "mv", "einsum")
ELEMENTWISE_PRODUCT = _ops("mul", "multiply", "__rmul__")
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
# takes the split at the end where the factor is smaller (``multipliers.scaled``).
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


def bound_arguments(func: Callable, args: tuple, kwargs: dict) -> dict:
    """Arguments by name where ``func`` has a Python signature, else ``{}``."""
    sig = _signature(func)
    if sig is None:
        return {}
    try:
        return dict(sig.bind(*args, **kwargs).arguments)
    except TypeError:
        return {}
