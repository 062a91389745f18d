"""Taps on layers: every layer method gives the same numbers when an in-place op follows the
tapped layer (torchvision-style ``ReLU(inplace=True)``) as when it does not."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import pathattr
from pathattr.layers import LayerNotExecuted, LayerNotReached

D = torch.float64


def net(inplace: bool) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(inplace=inplace), nn.Linear(6, 5),
                         nn.Tanh(), nn.Linear(5, 2)).to(D).eval()


METHODS = {
    "conductance": lambda m, x: pathattr.LayerConductance(m, "0").attribute(
        x, target=1, steps=32).attributions,
    "explain": lambda m, x: pathattr.explain(
        m, x, ["ig", ("conductance", "0")], target=1, steps=32)[("conductance", "0")].attributions,
    "neuron_conductance": lambda m, x: pathattr.NeuronConductance(m, "0").attribute(
        x, [1, 4], target=1, steps=16).attributions,
    "layer_ig": lambda m, x: pathattr.LayerIntegratedGradients(m, "0").attribute(
        x, target=1, steps=16).attributions,
    "layer_deeplift": lambda m, x: pathattr.LayerDeepLift(m, "0").attribute(
        x, target=1).attributions,
}


@pytest.mark.parametrize("method", METHODS)
def test_in_place_op_after_the_tapped_layer_changes_nothing(method):
    x = torch.randn(3, 4, dtype=D, generator=torch.Generator().manual_seed(1))
    plain = METHODS[method](net(False), x)
    torch.testing.assert_close(METHODS[method](net(True), x), plain, rtol=1e-12, atol=1e-14)


def test_one_call_of_a_module_that_runs_twice():
    class Twice(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.l1, self.l2, self.act = torch.nn.Linear(4, 4), torch.nn.Linear(4, 3), \
                torch.nn.Tanh()

        def forward(self, x):
            return self.l2(self.act(self.l1(self.act(x))))
    torch.manual_seed(0)
    m = Twice().double().eval()
    x = torch.randn(2, 4, dtype=torch.float64)
    inner = pathattr.LayerIntegratedGradients(m, "act@1").attribute(x, target=1, steps=8)
    # the second call's output feeds l2 only: exact for this linear head at any step count
    assert inner.delta.abs().max() < 1e-12
    with torch.no_grad():
        h, h0 = (m.act(m.l1(m.act(v))) for v in (x, torch.zeros_like(x)))
    torch.testing.assert_close(inner.attributions, m.l2.weight[1] * (h - h0))
    # a path in the space of one call (the layer above it is linear: exact)
    on_call = pathattr.LayerConductance(m, "l2", path_layer="act@1").attribute(
        x, target=1, steps=8)
    assert on_call.delta.abs().max() < 1e-12
    first = pathattr.LayerConductance(m, "act@0").attribute(x, target=1, steps=64)
    assert first.delta.abs().max() < 1e-5
    with pytest.raises(RuntimeError, match="'act@0'"):
        pathattr.LayerIntegratedGradients(m, "act").attribute(x, target=1, steps=4)
    with pytest.raises(LayerNotExecuted, match="call 2 never happened"):
        pathattr.LayerIntegratedGradients(m, "act@2").attribute(x, target=1, steps=4)


@pytest.mark.parametrize("cls", ["LayerIntegratedGradients", "LayerConductance",
                                 "LayerDeepLift"])
def test_a_layer_that_runs_but_does_not_reach_the_output_is_named(cls):
    # Captum returns zeros; autograd said only "element 0 of tensors does not require grad".


    class Branch(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.dead, self.b = nn.Linear(3, 3), nn.Linear(3, 3), nn.Linear(3, 2)

        def forward(self, x):
            self.dead(x)  # computed and discarded
            return self.b(torch.relu(self.a(x)))

    torch.manual_seed(0)
    m = Branch().eval()
    kw = {} if cls == "LayerDeepLift" else {"steps": 8}
    with pytest.raises(LayerNotReached, match="does not depend on layer 'dead'"):
        getattr(pathattr, cls)(m, "dead").attribute(torch.randn(2, 3), target=0, **kw)
    assert all(p.requires_grad for p in m.parameters())
    assert not m._forward_hooks and not m.dead._forward_hooks
