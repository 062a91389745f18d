"""Captum's class names and calling conventions over pathattr's methods: change one import.

    from captum.attr import IntegratedGradients      # before
    from pathattr.captum import IntegratedGradients  # after

Each class takes Captum's constructor and ``attribute`` arguments (names, positional order,
defaults) and returns what Captum returns: a tensor, or a tuple in the structure of the
inputs; ``(attributions, delta)`` with ``return_convergence_delta=True``. Every number comes
from pathattr's own methods; this module only translates arguments and results:

* ``n_steps`` -> ``steps``, ``method`` -> ``rule``, ``internal_batch_size`` -> ``batch_size``
  (points per chunk; None: pathattr's memory budget), one non-tuple
  ``additional_forward_args`` -> a 1-tuple, a list of layers -> a list of results.
* ``delta`` is Captum's: the attributions' sum minus ``F(x) - F(x')`` per example, also with
  ``multiply_by_inputs=False`` (the unscaled attributions' sum, as Captum reports it). The Shap
  variants and ``NoiseTunnel`` give one delta per (example, baseline or noise sample), example
  major, as Captum does.

Where pathattr differs on purpose it keeps its behaviour: a layer that does not reach the output
raises ``LayerNotReached``; bad arguments raise ``TypeError``/``ValueError`` naming the argument
where Captum asserts; DeepLIFT is pathattr's (exact summation-to-delta on any model, softmax by
its own rule) and ``eps`` is not an option of it; ``device_ids`` (DataParallel) is refused.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import Tap, resolve_layer, tap_layers, tensor_elements
from .methods.conductance import LayerConductance as _LayerConductance
from .methods.conductance import NeuronConductance as _NeuronConductance
from .methods.deeplift import DeepLift as _DeepLift
from .methods.deeplift import LayerDeepLift as _LayerDeepLift
from .methods.gradient import InputXGradient as _InputXGradient
from .methods.gradient import Saliency as _Saliency
from .methods.integrated_gradients import IntegratedGradients as _IntegratedGradients
from .methods.integrated_gradients import LayerIntegratedGradients as _LayerIG
from .result import Attribution

__all__ = ["DeepLift", "DeepLiftShap", "GradientShap", "InputXGradient", "IntegratedGradients",
           "InputBaselineXGradient", "LayerConductance", "LayerDeepLift", "LayerDeepLiftShap",
           "LayerGradientShap", "LayerInputBaselineXGradient", "LayerIntegratedGradients",
           "NeuronConductance", "NoiseTunnel", "Saliency"]


_ASSERTING: dict[type, type] = {}


def _asserting(cls: type) -> type:
    """``cls`` that is also an ``AssertionError``: where Captum asserts on a bad argument,
    pathattr raises ``TypeError``/``ValueError`` naming it, and code written for either
    catches this."""
    if cls not in _ASSERTING:
        _ASSERTING[cls] = type(cls.__name__, (cls, AssertionError),
                               {"__module__": cls.__module__, "__doc__": cls.__doc__})
    return _ASSERTING[cls]


def _captum_errors(method: Callable) -> Callable:
    @functools.wraps(method)
    def call(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        except AssertionError:
            raise
        except (TypeError, ValueError) as e:
            both = _asserting(type(e))
            try:
                e.__class__ = both  # keeps a pathattr error's own fields
            except TypeError:  # a built-in exception's class cannot be reassigned
                raise both(*e.args).with_traceback(e.__traceback__) from None
            raise
    return call


def _extra(args: Any) -> tuple | None:
    """Captum passes a single extra forward argument as itself."""
    return None if args is None else args if isinstance(args, tuple) else (args,)


def _chunk(internal_batch_size: int | None) -> int | str:
    return "auto" if internal_batch_size is None else internal_batch_size


def _no_devices(device_ids: object) -> None:
    if device_ids is not None:
        raise TypeError("device_ids: pathattr does not split a call over devices "
                        "(DataParallel); run the model on one device")


def _no_grad_kwargs(grad_kwargs: object) -> None:
    if grad_kwargs:
        raise TypeError("grad_kwargs: pathattr computes its own gradients")


def _per_example(attributions: Tensor | tuple | list) -> Tensor:
    parts = attributions if isinstance(attributions, (tuple, list)) else (attributions,)
    flat = [a.reshape(len(a), -1).sum(1) for a in parts]
    return torch.stack([f.to(flat[0].dtype) for f in flat]).sum(0)


class _Captum:
    """What every translated class shares: Captum's delta and the flags it exposes."""

    _native: Any
    _delta = True

    def has_convergence_delta(self) -> bool:
        return self._delta

    @property
    def multiplies_by_inputs(self) -> bool:
        return getattr(self._native, "multiply_by_inputs", True)

    def attribute_future(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__}.attribute_future: pathattr computes "
                                  f"synchronously; call attribute")

    def _result(self, r: Attribution, return_convergence_delta: bool, as_list: bool = False):
        a = list(r.attributions) if as_list else r.attributions
        if not return_convergence_delta:
            return a
        if r.delta is None:
            raise ValueError(f"return_convergence_delta: {type(self).__name__} has no "
                             f"convergence delta")
        if self.multiplies_by_inputs:
            return a, r.delta
        return a, _per_example(r.attributions) - r.info["output_delta"]

    @_captum_errors
    def compute_convergence_delta(self, attributions, start_point, end_point, target=None,
                                  additional_forward_args: Any = None) -> Tensor:
        """``sum(attributions) - (F(end_point) - F(start_point))`` per example (two forwards)."""
        return self._native.compute_convergence_delta(
            attributions, start_point, end_point, target, _extra(additional_forward_args))


class _LayerCaptum(_Captum):
    @staticmethod
    def interpolate(layer_attribution: Tensor, interpolate_dims: int | tuple[int, ...],
                    interpolate_mode: str = "nearest") -> Tensor:
        """Captum's ``LayerAttribution.interpolate``: upsample a layer's attribution to
        ``interpolate_dims`` (``torch.nn.functional.interpolate``)."""
        return F.interpolate(layer_attribution, interpolate_dims, mode=interpolate_mode)


class IntegratedGradients(_Captum):
    def __init__(self, forward_func: Callable, multiply_by_inputs: bool = True):
        self.forward_func = forward_func
        self._native = _IntegratedGradients(forward_func, multiply_by_inputs)

    @_captum_errors
    def attribute(self, inputs, baselines=None, target=None, additional_forward_args=None,
                  n_steps: int = 50, method: str = "gausslegendre",
                  internal_batch_size: int | None = None,
                  return_convergence_delta: bool = False):
        r = self._native.attribute(inputs, baselines, target, steps=n_steps, rule=method,
                                   batch_size=_chunk(internal_batch_size),
                                   additional_forward_args=_extra(additional_forward_args))
        return self._result(r, return_convergence_delta)


def _layers(layer: nn.Module | Sequence[nn.Module]) -> tuple[Any, bool]:
    return (list(layer), True) if isinstance(layer, (list, tuple)) else (layer, False)


class _LayerPath(_LayerCaptum):
    """Captum's ``attribute`` of a layer path method (LayerIG, LayerConductance)."""

    _several = False  # a list of layers given: a list of results

    @_captum_errors
    def attribute(self, inputs, baselines=None, target=None, additional_forward_args=None,
                  n_steps: int = 50, method: str = "gausslegendre",
                  internal_batch_size: int | None = None,
                  return_convergence_delta: bool = False,
                  attribute_to_layer_input: bool = False, grad_kwargs=None):
        _no_grad_kwargs(grad_kwargs)
        r = self._native.attribute(inputs, baselines, target, steps=n_steps, rule=method,
                                   batch_size=_chunk(internal_batch_size),
                                   attribute_to_layer_input=attribute_to_layer_input,
                                   additional_forward_args=_extra(additional_forward_args))
        return self._result(r, return_convergence_delta, as_list=self._several)


class LayerIntegratedGradients(_LayerPath):
    def __init__(self, forward_func: Callable, layer, device_ids=None,
                 multiply_by_inputs: bool = True):
        _no_devices(device_ids)
        self.forward_func, self.layer = forward_func, layer
        self._layer, self._several = _layers(layer)
        self._native = _LayerIG(forward_func, self._layer, multiply_by_inputs)


class LayerConductance(_LayerPath):
    def __init__(self, forward_func: nn.Module, layer: nn.Module, device_ids=None):
        _no_devices(device_ids)
        self.forward_func, self.layer = forward_func, layer
        self._native = _LayerConductance(forward_func, layer)


class NeuronConductance(_Captum):
    _delta = False

    def __init__(self, forward_func: nn.Module, layer: nn.Module, device_ids=None,
                 multiply_by_inputs: bool = True):
        _no_devices(device_ids)
        self.forward_func, self.layer = forward_func, layer
        self._native = _NeuronConductance(forward_func, layer,
                                          multiply_by_inputs=multiply_by_inputs)

    @_captum_errors
    def attribute(self, inputs, neuron_selector, baselines=None, target=None,
                  additional_forward_args=None, n_steps: int = 50,
                  method: str = "riemann_trapezoid", internal_batch_size: int | None = None,
                  attribute_to_neuron_input: bool = False):
        r = self._native.attribute(inputs, neuron_selector, baselines, target, steps=n_steps,
                                   rule=method, batch_size=_chunk(internal_batch_size),
                                   attribute_to_neuron_input=attribute_to_neuron_input,
                                   additional_forward_args=_extra(additional_forward_args))
        return _one_neuron(r.attributions)


def _one_neuron(a):
    """pathattr gives ``(n_neurons, *x.shape)``; Captum's selector names one neuron."""
    if isinstance(a, tuple):
        return tuple(_one_neuron(t) for t in a)
    return a[0] if a.dim() > 0 and a.shape[0] == 1 else a


def _check_eps(eps: float) -> None:
    if eps != 1e-10:
        raise ValueError("eps: pathattr's DeepLIFT decides where a difference is too small to "
                         "divide by from its rounding error; it takes no eps")


class DeepLift(_Captum):
    def __init__(self, model: nn.Module, multiply_by_inputs: bool = True, eps: float = 1e-10):
        _check_eps(eps)
        self.model = self.forward_func = model
        self._native = _DeepLift(model, multiply_by_inputs=multiply_by_inputs)

    @_captum_errors
    def attribute(self, inputs, baselines=None, target=None, additional_forward_args=None,
                  return_convergence_delta: bool = False, custom_attribution_func=None):
        r = self._native.attribute(inputs, baselines, target,
                                   additional_forward_args=_extra(additional_forward_args),
                                   custom_attribution_func=custom_attribution_func)
        return self._result(r, return_convergence_delta)


class LayerDeepLift(_LayerCaptum):
    def __init__(self, model: nn.Module, layer: nn.Module, multiply_by_inputs: bool = True):
        self.model = self.forward_func = model
        self.layer = layer
        self._native = _LayerDeepLift(model, layer, multiply_by_inputs=multiply_by_inputs)

    @_captum_errors
    def attribute(self, inputs, baselines=None, target=None, additional_forward_args=None,
                  return_convergence_delta: bool = False,
                  attribute_to_layer_input: bool = False, custom_attribution_func=None,
                  grad_kwargs=None):
        _no_grad_kwargs(grad_kwargs)
        r = self._native.attribute(inputs, baselines, target,
                                   attribute_to_layer_input=attribute_to_layer_input,
                                   additional_forward_args=_extra(additional_forward_args),
                                   custom_attribution_func=custom_attribution_func)
        return self._result(r, return_convergence_delta)


class Saliency(_Captum):
    _delta = False
    multiplies_by_inputs = False  # type: ignore[assignment]

    def __init__(self, forward_func: Callable):
        self.forward_func = forward_func
        self._native = _Saliency(forward_func)

    @_captum_errors
    def attribute(self, inputs, target=None, abs: bool = True, additional_forward_args=None):
        return self._native.attribute(
            inputs, target=target, abs=abs,
            additional_forward_args=_extra(additional_forward_args)).attributions


class InputXGradient(_Captum):
    _delta = False

    def __init__(self, forward_func: Callable):
        self.forward_func = forward_func
        self._native = _InputXGradient(forward_func)

    @_captum_errors
    def attribute(self, inputs, target=None, additional_forward_args=None):
        return self._native.attribute(
            inputs, target=target,
            additional_forward_args=_extra(additional_forward_args)).attributions


# --- expanding a batch: one row per (example, baseline or noise sample), example major -----

def _tuple(x: Any) -> tuple[tuple[Any, ...], bool]:
    return (x, True) if isinstance(x, tuple) else ((x,), False)


def _repeat_rows(v, n: int, batch: int):
    """A per-example value repeated ``n`` times each (targets, extra forward arguments)."""
    if isinstance(v, Tensor) and v.dim() > 0 and v.shape[0] == batch:
        return v.repeat_interleave(n, 0)
    if isinstance(v, list) and len(v) == batch:
        return [t for t in v for _ in range(n)]
    if isinstance(v, tuple) and not all(isinstance(t, int) for t in v):
        return tuple(_repeat_rows(t, n, batch) for t in v)
    return v


def _distribution(baselines: Any, inputs: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """Captum's baseline distribution: a tensor (or tuple) of K reference rows, or a callable
    returning one."""
    if callable(baselines):  # Captum passes the inputs as given if it takes an argument
        takes = inspect.signature(baselines).parameters
        baselines = baselines(inputs[0] if len(inputs) == 1 else inputs) if takes else baselines()
    parts, _ = _tuple(baselines)
    if len(parts) != len(inputs) or not all(isinstance(b, Tensor) for b in parts):
        raise TypeError("baselines: give a tensor of reference rows per input (a distribution "
                        "of K rows), or a callable returning them")
    for r, x in zip(parts, inputs):
        if r.shape[1:] != x.shape[1:]:
            raise ValueError(f"baselines: rows of shape {tuple(r.shape[1:])} for an input of "
                             f"rows {tuple(x.shape[1:])}")
    return tuple(b.to(x.device, x.dtype) for b, x in zip(parts, inputs))


class DeepLiftShap(_Captum):
    """DeepLIFT averaged over a distribution of K baselines: each example paired with every
    baseline (one DeepLIFT call over ``B * K`` rows), then the mean over the K."""

    def __init__(self, model: nn.Module, multiply_by_inputs: bool = True):
        self.model = self.forward_func = model
        self._native = _DeepLift(model, multiply_by_inputs=multiply_by_inputs)

    @_captum_errors
    def attribute(self, inputs, baselines, target=None, additional_forward_args=None,
                  return_convergence_delta: bool = False, custom_attribution_func=None,
                  **layer_options):
        xs, is_tuple = _tuple(inputs)
        refs = _distribution(baselines, xs)
        b, k = len(xs[0]), len(refs[0])
        if k < 2:
            raise ValueError("baselines: DeepLiftShap needs at least 2 baselines; use DeepLift")
        ex = tuple(x.repeat_interleave(k, 0) for x in xs)
        eb = tuple(r.repeat((b,) + (1,) * (r.dim() - 1)) for r in refs)
        r = self._native.attribute(ex if is_tuple else ex[0], eb if is_tuple else eb[0],
                                   _repeat_rows(target, k, b),
                                   additional_forward_args=_repeat_rows(
                                       _extra(additional_forward_args), k, b),
                                   custom_attribution_func=custom_attribution_func,
                                   **layer_options)
        mean = _mean_over(r.attributions, b, k)
        if not return_convergence_delta:
            return mean
        return mean, self._result(r, True)[1]


def _mean_over(a, b: int, k: int):
    if isinstance(a, tuple):
        return tuple(_mean_over(t, b, k) for t in a)
    return a.reshape(b, k, *a.shape[1:]).mean(1)


class LayerDeepLiftShap(DeepLiftShap, _LayerCaptum):
    def __init__(self, model: nn.Module, layer: nn.Module, multiply_by_inputs: bool = True):
        self.model = self.forward_func = model
        self.layer = layer
        self._native = _LayerDeepLift(model, layer, multiply_by_inputs=multiply_by_inputs)

    @_captum_errors
    def attribute(self, inputs, baselines, target=None, additional_forward_args=None,
                  return_convergence_delta: bool = False,
                  attribute_to_layer_input: bool = False, custom_attribution_func=None,
                  grad_kwargs=None):
        _no_grad_kwargs(grad_kwargs)
        return super().attribute(inputs, baselines, target, additional_forward_args,
                                 return_convergence_delta, custom_attribution_func,
                                 attribute_to_layer_input=attribute_to_layer_input)


class InputBaselineXGradient(_Captum):
    """One random point per row on the straight line from its baseline to its input (``alpha ~
    U(0, 1)`` drawn as Captum draws it, from numpy's global generator), the gradient there
    (pathattr's ``Saliency``) times ``x - x'``: GradientShap's inner step."""

    def __init__(self, forward_func: Callable, multiply_by_inputs: bool = True):
        self.forward_func, self._multiply = forward_func, multiply_by_inputs
        self._native = _IntegratedGradients(forward_func)  # for compute_convergence_delta
        self._gradient = _Saliency(forward_func)

    @property
    def multiplies_by_inputs(self) -> bool:
        return self._multiply

    def _gradients(self, points: tuple, is_tuple: bool, target, args, use_input) -> tuple:
        return _tuple(self._gradient.attribute(points if is_tuple else points[0], target=target,
                                               abs=False, additional_forward_args=args)
                      .attributions)[0]

    def _differences(self, xs: tuple, refs: tuple, args, use_input) -> tuple:
        return tuple(x - r for x, r in zip(xs, refs))

    @staticmethod
    def _several(inputs_tuple: bool, attr: tuple) -> bool:
        """Whether the result is a tuple: in the structure of the inputs."""
        return inputs_tuple

    @_captum_errors
    def attribute(self, inputs, baselines=None, target=None, additional_forward_args=None,
                  return_convergence_delta: bool = False):
        return self._attribute(inputs, baselines, target, additional_forward_args,
                               return_convergence_delta, False)

    def _attribute(self, inputs, baselines, target, additional_forward_args,
                   return_convergence_delta: bool, use_input: bool):
        xs, is_tuple = _tuple(inputs)
        parts = _tuple(0.0 if baselines is None else baselines)[0]
        refs = tuple(r if isinstance(r, Tensor) else torch.full_like(x, float(r))
                     for r, x in zip(parts, xs))
        alpha = torch.tensor(np.random.uniform(0.0, 1.0, len(xs[0])), device=xs[0].device,
                             dtype=xs[0].dtype)
        points = tuple(alpha.view(-1, *[1] * (x.dim() - 1)) * x
                       + (1 - alpha.view(-1, *[1] * (x.dim() - 1))) * r
                       for x, r in zip(xs, refs))
        args = _extra(additional_forward_args)
        grads = self._gradients(points, is_tuple, target, args, use_input)
        attr = tuple(g * d for g, d in zip(grads, self._differences(xs, refs, args, use_input))) \
            if self._multiply else grads
        out = attr if self._several(is_tuple, attr) else attr[0]
        if not return_convergence_delta:
            return out
        return out, self._native.compute_convergence_delta(
            attr, refs if is_tuple else refs[0], inputs, target, args)


class LayerInputBaselineXGradient(InputBaselineXGradient):
    """The same at a layer: the gradient with respect to the layer's activation at the random
    point (pathattr's ``LayerIntegratedGradients`` at a one-point path that stays there), times
    the activation's change ``a(x) - a(x')``."""

    forward_func: nn.Module

    def __init__(self, forward_func: Callable, layer: nn.Module, device_ids=None,
                 multiply_by_inputs: bool = True):
        _no_devices(device_ids)
        super().__init__(forward_func, multiply_by_inputs)
        self.layer = layer
        self._layer_gradient = _LayerIG(forward_func, layer, multiply_by_inputs=False)

    @_captum_errors
    def attribute(self, inputs, baselines=None, target=None, additional_forward_args=None,
                  return_convergence_delta: bool = False,
                  attribute_to_layer_input: bool = False, grad_kwargs=None):
        _no_grad_kwargs(grad_kwargs)
        return self._attribute(inputs, baselines, target, additional_forward_args,
                               return_convergence_delta, attribute_to_layer_input)

    def _gradients(self, points: tuple, is_tuple: bool, target, args, use_input) -> tuple:
        at = points if is_tuple else points[0]
        return _tuple(self._layer_gradient.attribute(
            at, at, target, steps=1, rule="riemann_right", additional_forward_args=args,
            attribute_to_layer_input=use_input).attributions)[0]

    def _differences(self, xs: tuple, refs: tuple, args, use_input) -> tuple:
        a, a0 = (_activations(self.forward_func, self.layer, t, args, use_input)
                 for t in (xs, refs))
        return tuple(p - q for p, q in zip(a, a0))

    @staticmethod
    def _several(inputs_tuple: bool, attr: tuple) -> bool:
        """In the structure of the layer: a tuple for a layer of several tensors."""
        return len(attr) > 1


def _activations(model: nn.Module, layer: nn.Module, xs: tuple, args: tuple | None,
                 use_input: bool) -> tuple[Tensor, ...]:
    """The layer's output (or input) on one plain forward: one tensor per tensor of it."""
    name, module = resolve_layer(model, layer)

    def forward():
        return model(*xs, *(args or ()))

    names = tensor_elements(name, module, use_input, forward)
    with tap_layers(model, [Tap(n, use_input) for n in names]) as readings, torch.no_grad():
        forward()
        return tuple(r.check() for r in readings)


class GradientShap(_Captum):
    """Captum's GradientShap: ``NoiseTunnel`` over the inner step above, each noisy copy with a
    baseline drawn from the distribution; the same draws from the same generators in the same
    order as Captum, so a seeded call reproduces Captum's samples."""

    def __init__(self, forward_func: Callable, multiply_by_inputs: bool = True):
        self.forward_func = forward_func
        self._native = InputBaselineXGradient(forward_func, multiply_by_inputs)

    @property
    def multiplies_by_inputs(self) -> bool:
        return self._native.multiplies_by_inputs

    @_captum_errors
    def attribute(self, inputs, baselines, n_samples: int = 5, stdevs: float | tuple = 0.0,
                  target=None, additional_forward_args=None,
                  return_convergence_delta: bool = False):
        return self._shap(inputs, baselines, n_samples, stdevs, target, additional_forward_args,
                          return_convergence_delta)

    def _shap(self, inputs, baselines, n_samples, stdevs, target, additional_forward_args,
              return_convergence_delta: bool, **layer_options):
        refs = _distribution(baselines, _tuple(inputs)[0])
        return NoiseTunnel(self._native).attribute(
            inputs, nt_type="smoothgrad", nt_samples=n_samples, stdevs=stdevs,
            draw_baseline_from_distrib=True, baselines=refs[0] if len(refs) == 1 else refs,
            target=target, additional_forward_args=additional_forward_args,
            return_convergence_delta=return_convergence_delta, **layer_options)


class LayerGradientShap(GradientShap, _LayerCaptum):
    def __init__(self, forward_func: Callable, layer: nn.Module, device_ids=None,
                 multiply_by_inputs: bool = True):
        self.forward_func, self.layer = forward_func, layer
        self._native = LayerInputBaselineXGradient(forward_func, layer, device_ids,
                                                   multiply_by_inputs)

    @_captum_errors
    def attribute(self, inputs, baselines, n_samples: int = 5, stdevs: float | tuple = 0.0,
                  target=None, additional_forward_args=None,
                  return_convergence_delta: bool = False,
                  attribute_to_layer_input: bool = False):
        return self._shap(inputs, baselines, n_samples, stdevs, target, additional_forward_args,
                          return_convergence_delta,
                          attribute_to_layer_input=attribute_to_layer_input)


class NoiseTunnel:
    """Captum's NoiseTunnel over any class of this module: ``nt_samples`` noisy copies of each
    example (``N(0, stdevs^2)`` added to every input), the wrapped method called on groups of
    ``nt_samples_batch_size`` copies per example, then the mean ("smoothgrad"), mean of squares
    ("smoothgrad_sq") or variance ("vargrad"). Noise, and baselines drawn from a distribution,
    come from the generators Captum uses (torch's, numpy's), in its order."""

    def __init__(self, attribution_method):
        if not callable(getattr(attribution_method, "attribute", None)):
            raise TypeError("attribution_method: expected an attribution object such as "
                            "IntegratedGradients(model)")
        self.attribution_method = attribution_method

    @property
    def multiplies_by_inputs(self) -> bool:
        return self.attribution_method.multiplies_by_inputs

    def has_convergence_delta(self) -> bool:
        return self.attribution_method.has_convergence_delta()

    @_captum_errors
    def attribute(self, inputs, nt_type: str = "smoothgrad", nt_samples: int = 5,
                  nt_samples_batch_size: int | None = None, stdevs: float | tuple = 1.0,
                  draw_baseline_from_distrib: bool = False, **kwargs):
        if nt_type not in ("smoothgrad", "smoothgrad_sq", "vargrad"):
            raise ValueError(f"nt_type must be smoothgrad, smoothgrad_sq or vargrad, got "
                             f"{nt_type!r}")
        if isinstance(nt_samples, bool) or not isinstance(nt_samples, int) or nt_samples < 1:
            raise ValueError(f"nt_samples must be a positive integer, got {nt_samples!r}")
        xs, is_tuple = _tuple(inputs)
        b = len(xs[0])
        sd = stdevs if isinstance(stdevs, tuple) else (stdevs,) * len(xs)
        if len(sd) != len(xs):
            raise ValueError(f"stdevs: {len(sd)} values for {len(xs)} inputs")
        size = nt_samples if nt_samples_batch_size is None else min(nt_samples,
                                                                    nt_samples_batch_size)
        groups = [size] * (nt_samples // size) + [nt_samples % size] * bool(nt_samples % size)
        wants_delta = bool(kwargs.get("return_convergence_delta"))
        results, deltas, call = [], [], self._expanded(kwargs, size, b, draw_baseline_from_distrib)
        for n in groups:
            if n != size:  # the remainder: drawn anew, as Captum does
                call = self._expanded(kwargs, n, b, draw_baseline_from_distrib)
            noisy = tuple(x.repeat_interleave(n, 0) + torch.normal(0, torch.tensor(
                s, device=x.device).repeat((b * n, *x.shape[1:]))) for x, s in zip(xs, sd))
            out = self.attribution_method.attribute(noisy if is_tuple else noisy[0], **call)
            if wants_delta:
                out, delta = out
                deltas.append(delta)
            results.append(_split(out, b, n))
        total = _reduce(_join(results), nt_type)
        if not wants_delta:
            return total
        return total, torch.cat(deltas, 0)  # example major within each group, as Captum

    @staticmethod
    def _expanded(kwargs: dict, n: int, b: int, from_distribution: bool) -> dict:
        """The wrapped method's arguments for ``n`` copies of each of ``b`` examples."""
        call = {k: _repeat_rows(v, n, b) for k, v in kwargs.items() if k != "baselines"}
        if kwargs.get("baselines") is not None:
            parts, is_tuple = _tuple(kwargs["baselines"])
            if from_distribution:
                out = tuple(r[np.random.choice(len(r), n * b).tolist()]
                            if isinstance(r, Tensor) else r for r in parts)
            else:
                out = tuple(r.repeat_interleave(n, 0) if isinstance(r, Tensor) and r.dim() > 0
                            and r.shape[0] == b and b > 1 else r for r in parts)
            call["baselines"] = out if is_tuple else out[0]
        return call


def _split(a, b: int, n: int):
    """``(b * n, ...)`` rows -> ``(b, n, ...)``, through tuples and lists."""
    if isinstance(a, (tuple, list)):
        return type(a)(_split(t, b, n) for t in a)
    return a.reshape(b, n, *a.shape[1:])


def _join(parts: list):
    first = parts[0]
    if isinstance(first, (tuple, list)):
        return type(first)(_join([p[i] for p in parts]) for i in range(len(first)))
    return torch.cat(parts, 1)


def _reduce(a, nt_type: str):
    if isinstance(a, (tuple, list)):
        return type(a)(_reduce(t, nt_type) for t in a)
    if nt_type == "smoothgrad":
        return a.mean(1)
    if nt_type == "smoothgrad_sq":
        return (a * a).mean(1)
    return (a * a).mean(1) - a.mean(1) ** 2
