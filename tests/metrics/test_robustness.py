"""Infidelity and sensitivity-max equal Captum's on the same perturbations, and behave as their
definitions say on analytic models."""

import pytest
import torch
from captum import metrics as cm
from captum.attr import IntegratedGradients as CaptumIG
from captum.attr import Saliency as CaptumSaliency
from torch import nn

import pathattr
from pathattr import metrics

D = torch.float64


def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).to(D).eval()


@pytest.mark.parametrize("normalize", [False, True])
def test_infidelity_equals_captums(normalize):
    model, x = net(), torch.randn(4, 5, dtype=D)
    attr = pathattr.IntegratedGradients(model).attribute(x, target=1, steps=16).attributions
    perturb = metrics.gaussian_perturbation(0.05, seed=3)
    ours = metrics.infidelity(model, x, attr, perturb, target=1, n_samples=7,
                              normalize=normalize)
    theirs = cm.infidelity(model, perturb, x, attr, target=1, n_perturb_samples=7,
                           normalize=normalize)
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-14)


def test_infidelity_of_exact_attributions_of_a_linear_model_is_zero():
    # F linear: F(x) - F(x - I) = w . I exactly, so the gradient x input's dot with I matches.
    model = nn.Linear(5, 2).to(D)
    x = torch.randn(3, 5, dtype=D)
    grad_attr = model.weight[1].detach().expand(3, 5)  # the multiplier map of target 1
    assert metrics.infidelity(model, x, grad_attr, target=1).abs().max() < 1e-20
    assert metrics.infidelity(model, x, -grad_attr, target=1).min() > 0


def test_sensitivity_max_equals_captums():
    model, x = net(), torch.randn(4, 5, dtype=D)
    perturb = metrics.uniform_perturbation(0.05, seed=1)

    def explain(inputs, target=1):
        return CaptumSaliency(model).attribute(inputs, target=target, abs=False)

    ours = metrics.sensitivity_max(explain, x, perturb, n_samples=6)
    theirs = cm.sensitivity_max(explain, x, perturb_func=perturb, n_perturb_samples=6)
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-14)


def test_sensitivity_max_of_a_linear_models_gradient_is_zero_and_ig_on_tanh_is_not():
    model = nn.Linear(5, 2).to(D)
    x = torch.randn(3, 5, dtype=D)
    sal = pathattr.Saliency(model)
    assert metrics.sensitivity_max(lambda v: sal.attribute(v, target=0, abs=False), x).max() \
        < 1e-15
    ig = CaptumIG(net())
    s = metrics.sensitivity_max(lambda v: ig.attribute(v, target=1), x[:, :5], radius=0.1)
    assert (s > 0).all() and s.shape == (3,)


def test_bad_arguments():
    model, x = net(), torch.randn(2, 5, dtype=D)
    with pytest.raises(ValueError, match="attributions has shape"):
        metrics.infidelity(model, x, torch.zeros(2, 4, dtype=D), target=0)
    with pytest.raises(ValueError, match="n_samples"):
        metrics.infidelity(model, x, torch.zeros_like(x), target=0, n_samples=0)
    with pytest.raises(ValueError, match="one row per example"):
        metrics.sensitivity_max(lambda v: v[:1], x)
