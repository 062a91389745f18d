import math

import numpy as np
import pytest
import torch
from saliency.core import blur_ig as pair_blur_ig
from saliency.core.base import INPUT_OUTPUT_GRADIENTS
from torch import nn

from pathattr.baselines import gaussian_blur
from pathattr.methods.blur_ig import BlurIntegratedGradients, blur_and_derivative


def small_cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.Tanh(), nn.Flatten(),
                         nn.Linear(4 * 12 * 12, 8), nn.Tanh(), nn.Linear(8, 3)).double().eval()


def images(n=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, 12, 12, dtype=torch.float64, generator=g)


@pytest.mark.parametrize("sigma", [0.3, 1.7, 2.45])
def test_blur_is_the_library_blur_and_its_derivative_is_exact(sigma):
    x = images()
    blurred, deriv = blur_and_derivative(x, sigma)
    ref = gaussian_blur(x, sigma, kernel_size=2 * math.ceil(4 * sigma) + 1)
    torch.testing.assert_close(blurred, ref, rtol=1e-12, atol=1e-12)
    h = 1e-5
    fd = (blur_and_derivative(x, sigma + h)[0] - blur_and_derivative(x, sigma - h)[0]) / (2 * h)
    torch.testing.assert_close(deriv, fd, rtol=1e-6, atol=1e-8)


def test_matches_pair_saliency(monkeypatch):
    model = small_cnn()
    x = images()
    t = [0, 2]

    # PAIR blurs with scipy (zero padding); give it our blur so both walk the same path.
    def blur_hwc(image, sigma):
        chw = torch.as_tensor(image).permute(2, 0, 1)[None]
        return blur_and_derivative(chw, sigma)[0][0].permute(1, 2, 0).numpy()
    monkeypatch.setattr(pair_blur_ig, "gaussian_blur", blur_hwc)

    def call(target):
        def f(x_batch, call_model_args=None, expected_keys=None):
            xb = torch.as_tensor(np.asarray(x_batch)).permute(0, 3, 1, 2).requires_grad_(True)
            (g,) = torch.autograd.grad(model(xb)[:, target].sum(), xb)
            return {INPUT_OUTPUT_GRADIENTS: g.permute(0, 2, 3, 1).numpy()}
        return f

    ours = BlurIntegratedGradients(model).attribute(x, target=t, max_sigma=3.7, steps=30,
                                                    rule="riemann_right")
    for b in range(2):
        ref = pair_blur_ig.BlurIG().GetMask(x[b].permute(1, 2, 0).numpy(), call(t[b]),
                                            max_sigma=3.7, steps=30, grad_step=1e-5, batch_size=8)
        # Same nodes and weights; PAIR's forward difference (step 1e-5) against our exact
        # derivative is the only difference, O(1e-5) relative. (max_sigma 3.7 keeps 4 sigma
        # off integers on PAIR's grid: there the truncated kernel grows by two taps, and a
        # finite difference across that ~1e-5 jump of the path would be meaningless.)
        np.testing.assert_allclose(ours.attributions[b].permute(1, 2, 0).numpy(), ref,
                                   rtol=1e-3, atol=1e-4 * np.abs(ref).max())


def test_completeness_on_a_smooth_model():
    r = BlurIntegratedGradients(small_cnn()).attribute(images(), target=1, max_sigma=5, steps=64)
    assert (r.relative_delta() < 1e-2).all()
    assert r.alphas.min() > 0 and r.alphas.max() < 1


def test_bad_inputs():
    model = small_cnn()
    with pytest.raises(ValueError, match="images"):
        BlurIntegratedGradients(model).attribute(torch.ones(2, 12, dtype=torch.float64), target=0)
    with pytest.raises(ValueError, match="max_sigma"):
        BlurIntegratedGradients(model).attribute(images(), target=0, max_sigma=0)


def test_idgi_on_the_blur_path_equals_its_equations_step_by_step():
    model, x, steps, top = small_cnn(), images(), 6, 3.0
    r = BlurIntegratedGradients(model).attribute(x, target=1, max_sigma=top, steps=steps,
                                                 idgi=True, batch_size=5)
    nodes = [blur_and_derivative(x, top * (1 - k / steps))[0] for k in range(steps)] + [x]
    want = torch.zeros_like(x)
    for here, there in zip(nodes[:-1], nodes[1:]):
        p = here.clone().requires_grad_(True)
        f = model(p)[:, 1]
        (g,) = torch.autograd.grad(f.sum(), p)
        with torch.no_grad():
            change = model(there)[:, 1] - f
        share = g.square() / g.square().flatten(1).sum(1)[:, None, None, None]
        want += share * change[:, None, None, None]
    torch.testing.assert_close(r.attributions, want, rtol=1e-10, atol=1e-13)
    with torch.no_grad():
        gap = model(x)[:, 1] - model(nodes[0])[:, 1]
    torch.testing.assert_close(r.attributions.flatten(1).sum(1), gap, rtol=0, atol=1e-12)
    assert r.info["rule"] == "riemann_left" and r.delta.abs().max() < 1e-12


def test_idgi_takes_only_the_left_riemann_nodes():
    with pytest.raises(ValueError, match="riemann_left"):
        BlurIntegratedGradients(small_cnn()).attribute(images(), target=0, idgi=True,
                                                       rule="gausslegendre")
