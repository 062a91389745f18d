"""The cascading model-randomisation check separates a method that reads the model from one
that only shows the input."""

import numpy as np
import pytest
import torch
from torch import nn

import pathattr
from pathattr import metrics


def trained_like():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(32, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(),
                         nn.Linear(16, 3)).double().eval()


class InputOnly:
    """A 'method' that ignores the model: |attribution| = |x|."""

    def __init__(self, model):
        self.model = model

    def attribute(self, x, target=None):
        return x.clone()


def test_gradients_decorrelate_as_layers_are_randomised_and_an_input_map_does_not():
    model, x = trained_like(), torch.randn(6, 32, dtype=torch.float64)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sal = metrics.randomisation_check(pathattr.Saliency, model, x, target=1)
    assert sal.layers == ["4", "2", "0"]  # top first
    assert sal.correlations.shape == (3, 6)
    assert np.abs(sal.mean()).max() < 0.3  # the gradient's ranking is gone from the first step
    # IG multiplies by the input, which survives randomisation (Adebayo et al.'s finding for
    # gradient x input): it keeps part of its ranking, between the gradient and the input
    ig = metrics.randomisation_check(pathattr.IntegratedGradients, model, x, target=1,
                                     steps=16)
    assert np.all(ig.mean() > sal.mean() + 0.2) and np.all(ig.mean() < 0.8)
    same = metrics.randomisation_check(InputOnly, model, x, target=1)
    np.testing.assert_allclose(same.correlations, 1.0)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    state = torch.random.get_rng_state()
    again = metrics.randomisation_check(pathattr.Saliency, model, x, target=1)
    np.testing.assert_array_equal(again.correlations, sal.correlations)  # seeded
    assert torch.equal(torch.random.get_rng_state(), state)


def test_bad_layers():
    model = trained_like()
    with pytest.raises(ValueError, match="unknown \\['9'\\]"):
        metrics.randomisation_check(pathattr.Saliency, model, torch.randn(2, 32).double(),
                                    target=0, layers=["9"])


class EdgeDetector:
    """Ignores the model: |horizontal + vertical differences| of the image."""

    def __init__(self, model):
        self.model = model

    def attribute(self, x, target=None):
        dx = torch.zeros_like(x)
        dx[..., 1:] = x[..., 1:] - x[..., :-1]
        dx[..., 1:, :] += x[..., 1:, :] - x[..., :-1, :]
        return dx.abs()


def test_ssim_of_image_maps_drops_for_gradients_and_stays_for_an_edge_detector():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                          nn.ReLU(), nn.Flatten(), nn.Linear(8 * 16 * 16, 4)).double().eval()
    # smooth images with structure, so that the maps have some
    x = torch.nn.functional.avg_pool2d(torch.rand(3, 3, 20, 20, dtype=torch.float64), 5, 1)
    sal = metrics.randomisation_check(pathattr.Saliency, model, x, target=0)
    edge = metrics.randomisation_check(EdgeDetector, model, x, target=0)
    assert sal.ssim.shape == sal.correlations.shape == (3, 3)
    np.testing.assert_allclose(edge.ssim, 1.0)
    np.testing.assert_allclose(edge.correlations, 1.0)
    assert sal.ssim.mean(1)[-1] < 0.5 and np.abs(sal.mean()[-1]) < 0.3
    assert metrics.randomisation_check(EdgeDetector, model, x, target=0, ssim=False).ssim is None
    with pytest.raises(ValueError, match="ssim compares image maps"):
        metrics.randomisation_check(InputOnly, trained_like(), torch.randn(2, 32).double(),
                                    target=0, ssim=True)
