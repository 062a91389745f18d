"""Hostile input thrown at every public method (hypothesis): each call either returns a result
whose completeness gap is finite, or raises an exception whose message names the argument that
is wrong. Never a hang (each call is time-boxed), a raw torch error, or a changed model."""

from __future__ import annotations

import inspect
import re
import signal
from contextlib import contextmanager

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from torch import nn

import pathattr
from pathattr import registry

#: Words that name what a caller passed: an argument, the model, or the input it was given.
NAMES = re.compile(r"\b(x|baselines?|target|steps|rule|model|batch_size|classes|inputs?|"
                   r"images|fraction|saturation|noise|stdevs|n_samples)\b")


class Net(nn.Module):
    """Takes (B, 6) or any (B, ...) of 6 features, e.g. a (B, 1, 2, 3) image; (B, 3) logits."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.fc1, self.fc2 = nn.Linear(6, 8), nn.Linear(8, 3)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x.flatten(1))))


def snapshot(model: nn.Module) -> tuple:
    return ([(k, v.clone()) for k, v in model.state_dict().items()],
            [m.training for m in model.modules()],
            [p.requires_grad for p in model.parameters()],
            [len(d) for m in model.modules() for d in (m._forward_hooks, m._forward_pre_hooks,
                                                         m._backward_hooks)])


def same(a: tuple, b: tuple) -> bool:
    return all(torch.equal(x, y) for (_, x), (_, y) in zip(a[0], b[0])) and a[1:] == b[1:]


@contextmanager
def time_box(seconds: int):
    def hang(*_):
        raise TimeoutError(f"the call did not return within {seconds} s")

    old = signal.signal(signal.SIGALRM, hang)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def poison(t: torch.Tensor, what: str, where: int) -> torch.Tensor:
    if what == "clean" or t.numel() == 0 or not t.is_floating_point():
        return t
    t = t.clone()
    t.view(-1)[where % t.numel()] = float(what)
    return t


#: The layer methods, which the registry (image methods by name) does not list.
LAYER_METHODS = {
    "layer-ig": lambda m: pathattr.LayerIntegratedGradients(m, "fc1"),
    "layer-conductance": lambda m: pathattr.LayerConductance(m, "fc1"),
    "layer-deeplift": lambda m: pathattr.LayerDeepLift(m, "fc1"),
    "neuron-conductance": lambda m: Neurons(pathattr.NeuronConductance(m, "fc1")),
}


class Neurons:
    """NeuronConductance of neurons 0 and 3 with the common call ``(x, baselines, target)``."""

    def __init__(self, method):
        self.method = method

    def attribute(self, x, baselines=None, target=None, *, steps=50):
        return self.method.attribute(x, [0, 3], baselines, target, steps=steps)


def make(method: str, model: nn.Module):
    return LAYER_METHODS[method](model) if method in LAYER_METHODS else \
        registry.make(method, model)


@st.composite
def calls(draw):
    method = draw(st.sampled_from([*registry.available(), *LAYER_METHODS]))
    b = draw(st.integers(0, 3))
    features = draw(st.sampled_from([(6,)] * 4 + [(1, 2, 3)] * 2 + [(5,), (2, 3), (1, 6, 1, 1),
                                                                    ()]))
    dtype = draw(st.sampled_from([torch.float32] * 3 + [torch.float64] * 2 +
                                 [torch.float16, torch.int64]))
    x = torch.randn(b, *features).to(dtype)
    x = poison(x, draw(st.sampled_from(["clean"] * 6 + ["nan", "inf", "-inf"])),
               draw(st.integers(0, 100)))
    baselines = draw(st.sampled_from([None] * 4 + [0.0, "zeros"] * 2 + [
        float("inf"), float("nan"), "wrong-shape", "poisoned"]))
    if baselines == "zeros":
        baselines = torch.zeros_like(x)
    elif baselines == "wrong-shape":
        baselines = torch.zeros(b + 1, 6)
    elif baselines == "poisoned":
        baselines = poison(torch.zeros(b, *features), "nan", draw(st.integers(0, 100)))
    target = draw(st.sampled_from([None, 0, 2] * 3 + [3, -1, "list", "tensor", "wide", 1.5]))
    if target == "list":
        target = [0] * draw(st.integers(0, 4))
    elif target == "tensor":
        target = torch.randint(0, 4, (draw(st.integers(0, 4)),))
    elif target == "wide":
        target = torch.zeros(b, 2, dtype=torch.long)
    steps = draw(st.sampled_from([1, 2, 5] * 3 + [0, -3, 10**7, 2.5, "auto", "many"]))
    return method, x, baselines, target, steps


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(calls())
def test_hostile_calls_give_a_result_or_a_named_error(call):
    method, x, baselines, target, steps = call
    model = Net().eval()
    before = snapshot(model)
    explainer = make(method, model)
    params = inspect.signature(explainer.attribute).parameters
    kwargs = {"target": target}
    if "steps" in params:
        kwargs["steps"] = steps
    kwargs.update(registry.METHODS[method].attribute if method in registry.METHODS else {})
    if baselines is not None and "baselines" in params and method not in (
            "saliency", "blur-ig", "agi"):
        kwargs["baselines"] = baselines
    try:
        with time_box(30):
            result = explainer.attribute(x, **kwargs)
    except TimeoutError:
        raise
    except Exception as e:  # noqa: BLE001 -- every kind is judged by its message
        message = str(e)
        event(f"refused: {type(e).__name__}: {message[:70]}")
        assert NAMES.search(message), f"{type(e).__name__} names no argument: {message}"
        assert not re.search(r"^(mat1 and mat2|The size of tensor a|expected scalar type)",
                             message), f"raw torch error: {message}"
    else:
        event("result")
        delta = getattr(result, "delta", None)
        if delta is not None:
            assert torch.isfinite(delta).all(), (method, delta)
        assert torch.isfinite(result.attributions).all() or x.numel() == 0
    assert same(snapshot(model), before), "the call changed the model"


@pytest.mark.parametrize("method", [*registry.available(), *LAYER_METHODS])
def test_every_method_runs_on_the_fuzz_net(method):
    # The fuzz test must reach the success branch for every method, or it tests only errors.
    result = make(method, Net().eval()).attribute(torch.randn(2, 1, 2, 3), target=1)
    assert result.attributions.shape[0] == 2
