"""DeepLIFT by operation: a ``TorchFunctionMode`` that gives every op its multiplier rule.

The model runs twice under ``DeepLiftMode``: first on the references ``x'`` (``mode.reference()``),
where each rule records the reference values it will need on a tape, then on the inputs ``x``
(``mode.inputs()``), where each rule takes its entry from the tape in call order. Only the
second run is differentiated, so the backward runs on the input rows alone. Calls that touch a
*varying* tensor (one that requires grad, i.e. depends on the attributed signal) are sorted into:

* affine ops: run as they are, since autograd's chain rule through an affine map already is
  DeepLIFT's linear rule on differences. An op is affine when every ATen operator it dispatches
  to is affine in its varying arguments by torch's own derivative metadata (``linearity``): no
  list of Python names, so ``tensor_split``, ``diff`` or ``unfold`` need no entry.
* elementwise nonlinearities ``y = f(z)``: a custom autograd function whose backward multiplies
  the incoming gradient by the multiplier ``m = dy / dz`` (Rescale), or by RevealCancel's
  ``m+``/``m-`` when ``z`` comes straight from a linear / convolution layer (optionally through
  eval batch norm).
* max pooling: each window's ``dy`` is credited to one input (see ``MaxPool``).
* the product of two varying tensors ``a * b`` (also ``matmul``, ``bmm``, ``mv``, ``einsum``):
  the Shapley split ``d(ab) = da (b + b') / 2 + (a + a') / 2 db``, exact for any bilinear map.
  ``addmm``-style ops run as ``beta * input + alpha * (a @ b)``, a varying divisor as a product
  with its reciprocal.
* softmax, log_softmax, logsumexp and layer / RMS / group norm (rules that see the op's input
  and reference at once), and fused attention and recurrent kernels (run as their
  decomposition under this mode): ``deeplift.composite``.
* anything else: ``NoDeepLiftRule`` naming the op and the ATen operator that is not affine, or
  with ``fallback`` its plain gradient and a warning.

Each example is paired with its own reference row, so no example ever mixes with another. Each
rule keeps summation-to-delta exactly (up to rounding), except where a difference is too small
to divide by (see ``rescale_multiplier``): there the gradient stands in. A model
whose two runs call different operations (data-dependent control flow) is refused.
"""

from __future__ import annotations

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

from .composite import COMPOSITES, DECOMPOSITIONS
from .linearity import AffineProbe, probe_key
from .multipliers import (
    AffineSource,
    MaxPool,
    Pair,
    Rescale,
    RevealCancel,
    batch_norm_source,
    linear_source,
    scaled,
    shapley_product,
)
from .ops import (
    AFFINE_PRODUCT,
    CONSTRUCTORS,
    DETACH,
    DIVISION,
    ELEMENTWISE,
    ELEMENTWISE_PRODUCT,
    LINEAR_LAYERS,
    MATMUL,
    MAXPOOL,
    PRODUCT,
    SCALES,
    SHAPED_LIKE,
    TRAINING_FLAG,
    NoDeepLiftRule,
    bound_arguments,
    op_name,
)


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
            # deliberate: custom autograd Functions run as plain forwards inside the mode
            torch.autograd.Function.apply = classmethod(_apply_as_forward)  # pyright: ignore
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
        # the probe's verdict per kind of call (``linearity.probe_key``), for this call only
        self._verdicts: dict[tuple, str | None] = {}
        self._scales: dict[int, tuple[weakref.ref, bool]] = {}
        self._tape: list[_Entry] = []
        self._next = 0
        self._recording = True
        #: detached values replaced by the reference run's in the last input run (``_detach``)
        self.substituted = 0
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
        if func in TRAINING_FLAG and bound_arguments(func, args, kwargs).get("training"):
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
                return shapley_product(func, args, kwargs, factors[0], factors[1], a_ref, b_ref)
        # no rule of its own: affine if every ATen operator it runs is (``linearity``), and then
        # autograd's chain rule through it already is DeepLIFT's linear rule on differences
        key = probe_key(func, args, kwargs)
        if key is not None and key in self._verdicts:
            out, offending = func(*args, **kwargs), self._verdicts[key]
        else:
            with AffineProbe() as probe:
                out = func(*args, **kwargs)
            offending = probe.offending
            if key is not None:
                self._verdicts[key] = offending
        if not any(isinstance(t, Tensor) for t in tree_leaves(out)):
            return out  # metadata (shape, dim, item): no tensor flows on
        made = [t for t in tree_leaves(out) if isinstance(t, Tensor)]
        if not any(t.is_floating_point() or t.is_complex() for t in made):
            return self._held(func, args, kwargs, varying[0], made, out)
        if offending is not None:
            return self._unsupported(
                func, args, kwargs, f"runs {offending}, which is neither a supported "
                f"nonlinearity nor affine in the attributed signal", out)
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

    def _held(self, func, args, kwargs, like: Tensor, made: list[Tensor], out):
        """A boolean or integer result computed from the signal (``isnan``, a comparison, an
        ``argmax`` used as an index) carries no difference: a constant, which is exact where
        the input run computes what the reference run did, and unsupported where not."""
        if self._recording:
            self._tensors(func, like, *made)
            return out
        ref = self._tensors(func, like)
        if len(ref) != len(made) or not all(torch.equal(a, b) for a, b in zip(made, ref)):
            return self._unsupported(func, args, kwargs, f"gives a {made[0].dtype} result that "
                                     f"differs from the reference's, so it is no constant", out)
        self.counts["held constant"] += 1
        return out

    def _composite(self, func, args, kwargs, varying):
        """A rule that needs the op's input and its reference at once (``deeplift.composite``);
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
        bound = bound_arguments(fn, args, kwargs)
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
            y = RevealCancel.apply(z, source.abs_terms((source.a - a_ref[0]).abs()), f, z_ref)
        y = z.copy_(y) if in_place else y
        if fn in SCALES or (fn in (torch.pow, Tensor.pow) and isinstance(
                exponent := bound_arguments(fn, args, kwargs).get("exponent"), (int, float))
                and exponent < 0):
            self._remember(self._scales, y, True)
        return y

    def _maxpool(self, func, args, kwargs, varying):
        self._single_first(func, args, varying)
        (z_ref,) = self._tensors(func, args[0], args[0])
        if self._recording:
            return func(*args, **kwargs)
        pool, k = MAXPOOL[func]
        with_indices = pool is func or bool(
            bound_arguments(pool, args, kwargs).get("return_indices"))
        self.counts["maxpool"] += 1
        y, idx = MaxPool.apply(args[0], lambda t: pool(t, *args[1:], **kwargs), k, z_ref)
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
            src = linear_source(func, args, kwargs)
        elif func is F.batch_norm and (prev := self._source_of(args[0])) is not None:
            src = batch_norm_source(prev, bound_arguments(func, args, kwargs))
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

