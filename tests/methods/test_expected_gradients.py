"""Expected Gradients against its definition evaluated by hand at the drawn samples, against
Captum's GradientShap where both compute the same thing, and converging to its deterministic
counterpart (IG over every baseline of the data set) as the samples grow."""

import pytest
import torch
from captum.attr import GradientShap
from torch import nn

import pathattr
from pathattr.methods.expected_gradients import ExpectedGradients

D = torch.float64


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 10), nn.Tanh(), nn.Linear(10, 3)).to(D).eval()


def data(n=3, k=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, dtype=D, generator=g), torch.randn(k, 6, dtype=D, generator=g)


def test_equals_the_definition_at_the_drawn_samples():
    model = mlp()
    x, ref = data()
    r = ExpectedGradients(model).attribute(x, ref, target=1, samples=9, batch_size=4)
    pick, alpha = r.info["baseline_index"], r.alphas
    assert pick.shape == alpha.shape == (3, 9)
    want = torch.zeros_like(x)
    sums = torch.zeros(3, 9, dtype=D)
    for e in range(3):
        for j in range(9):
            base = ref[pick[e, j]]
            p = (base + alpha[e, j] * (x[e] - base)).requires_grad_(True)
            (g,) = torch.autograd.grad(model(p[None])[0, 1], p)
            want[e] += g * (x[e] - base) / 9
            sums[e, j] = (g * (x[e] - base)).sum()
    torch.testing.assert_close(r.attributions, want, rtol=1e-12, atol=1e-14)
    with torch.no_grad():
        drawn = model(ref)[:, 1][pick]
        out = model(x)[:, 1] - drawn.mean(1)
    torch.testing.assert_close(r.delta, want.sum(1) - out, rtol=0, atol=1e-12)
    torch.testing.assert_close(r.info["sum_standard_error"], sums.std(1) / 3, rtol=1e-10,
                               atol=0)
    again = ExpectedGradients(model).attribute(x, ref, target=1, samples=9, batch_size=4)
    assert torch.equal(again.attributions, r.attributions)  # seeded: the same draws


def test_linear_model_and_captum_gradient_shap_with_one_baseline():
    lin = nn.Linear(6, 2).to(D).eval()
    x, ref = data()
    r = ExpectedGradients(lin).attribute(x, ref, target=0, samples=16)
    mean_base = ref[r.info["baseline_index"]].mean(1)  # (B, 6)
    want = lin.weight.detach()[0] * (x - mean_base)
    torch.testing.assert_close(r.attributions, want, rtol=1e-12, atol=1e-14)
    assert r.delta.abs().max() < 1e-12
    # one reference example and no noise: GradientShap is Expected Gradients
    model = mlp(2).float()
    xf, one = x.float(), ref[:1].float()
    torch.manual_seed(0)
    cap = GradientShap(model).attribute(xf, one, target=2, n_samples=2000, stdevs=0.0)
    ours = ExpectedGradients(model).attribute(xf, one, target=2, samples=2000)
    se = ours.info["standard_error"]
    # different draws of alpha: equal within their two standard errors combined
    assert ((ours.attributions - cap).abs() <= 6 * se + 1e-6).all()
    # a linear model has no alpha dependence: equal to 1e-6
    lin32 = lin.float()
    cap = GradientShap(lin32).attribute(xf, one, target=1, n_samples=5, stdevs=0.0)
    ours = ExpectedGradients(lin32).attribute(xf, one, target=1, samples=5)
    torch.testing.assert_close(ours.attributions, cap, rtol=1e-6, atol=1e-6)


def test_converges_to_the_quadrature_counterpart_over_the_same_baselines():
    model = mlp(3)
    x, ref = data(seed=4)
    quad = ExpectedGradients(model).attribute(x, ref, target=0, sampling="quadrature",
                                              steps=64)
    ig = pathattr.IntegratedGradients(model).attribute(
        x, pathattr.baselines.Several(ref), target=0, steps=64)
    torch.testing.assert_close(quad.attributions, ig.attributions, rtol=0, atol=0)
    assert quad.relative_delta().max() < 1e-8
    errors = []
    for n in (64, 4096):
        r = ExpectedGradients(model).attribute(x, ref, target=0, samples=n, seed=n)
        err = (r.attributions - quad.attributions).abs()
        assert (err <= 5 * r.info["standard_error"] + 1e-12).all()
        assert (r.delta.abs() <= 5 * r.info["sum_standard_error"]).all()
        errors.append(err.mean())
    assert errors[1] < errors[0] / 3  # 1/sqrt(n): 8x fewer in expectation


def test_bad_arguments():
    model = mlp()
    x, ref = data()
    eg = ExpectedGradients(model)
    with pytest.raises(TypeError, match="baselines"):
        eg.attribute(x, None, target=0)
    with pytest.raises(ValueError, match="sampling"):
        eg.attribute(x, ref, target=0, sampling="grid")
    with pytest.raises(ValueError, match="samples"):
        eg.attribute(x, ref, target=0, samples=1)
    with pytest.raises(ValueError, match="Several"):
        eg.attribute(x, ref[:, :4], target=0)
