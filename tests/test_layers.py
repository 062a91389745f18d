"""Taps on layers: every layer method gives the same numbers when an in-place op follows the
tapped layer (torchvision-style ``ReLU(inplace=True)``) as when it does not."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import pathattr

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
