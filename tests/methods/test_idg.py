import numpy as np
import pytest
import torch
from torch import nn

from pathattr.methods.idg import IntegratedDecisionGradients, largest_remainder
from pathattr.methods.integrated_gradients import IntegratedGradients


class Sigmoid1D(nn.Module):
    """F(x) = 10 sigmoid(20 (sum(x) - 0.5)): along 0 -> x with sum(x) = 1 the logit rises around
    alpha = 0.5 and is flat elsewhere."""

    def forward(self, x):
        return 10 * torch.sigmoid(20 * (x.sum(1) - 0.5))


def sigmoid_path(a):
    return 10 / (1 + np.exp(-20 * (a - 0.5)))


def smooth_mlp(dtype=torch.float64, shift=0.0):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 3)).to(dtype).eval()
    with torch.no_grad():
        m[2].bias += shift
    return m


def reference_idg(model, x, base, target, n=200):
    """(x - x') int g (g . (x - x')) da by float64 Gauss-Legendre, gradients by plain autograd."""
    a, w = np.polynomial.legendre.leggauss(n)
    a, w = (a + 1) / 2, w / 2
    out = torch.zeros_like(x)
    d = x - base
    for ak, wk in zip(a, w, strict=True):
        p = (base + ak * d).requires_grad_(True)
        (g,) = torch.autograd.grad(model(p)[torch.arange(len(x)), target].sum(), p)
        out += wk * g * (g * d).sum(1, keepdim=True)
    return out * d


def reference_case():
    """A smooth float64 MLP, three inputs, one baseline, targets, and ``reference_idg``."""
    model = smooth_mlp()
    x = torch.randn(3, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    base = torch.randn(6, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    t = torch.tensor([2, 0, 1])
    return model, x, base, t, reference_idg(model, x, base.expand_as(x), t)


def test_adaptive_samples_concentrate_where_the_logit_rises():
    x = torch.full((2, 4), 0.25)
    r = IntegratedDecisionGradients(Sigmoid1D()).attribute(x, steps=50, coarse_steps=50)
    coarse = np.linspace(0, 1, 50)
    change = np.abs(np.diff(sigmoid_path(coarse)))
    share = 50 * change / change.sum()
    must = np.flatnonzero(share >= 1)  # sub-intervals guaranteed at least one sample
    for a, w in zip(r.alphas, r.weights, strict=True):
        a = a.double().numpy()
        assert len(a) == 50 and np.all(np.diff(a) > 0)
        assert a.min() >= 0 and a.max() <= 1
        # the weights cover exactly the sub-intervals that got samples (the paper's rule: a
        # sub-interval too flat to earn one sample contributes nothing)
        got = np.unique(np.searchsorted(coarse, a) - 1)
        assert abs(float(w.double().sum()) - np.diff(coarse)[got].sum()) < 1e-6
        assert set(must) <= set(got)
        assert np.mean((a > 0.35) & (a < 0.65)) >= 0.85  # uniform sampling: 0.3
        # both ends of the region where the output moves are reached
        assert a.min() < coarse[must[0] + 1] and a.max() > coarse[must[-1]]


def test_weights_sum_to_one_when_the_output_moves_everywhere():
    x = torch.full((1, 4), 0.25)
    linear = nn.Linear(4, 1).eval()
    r = IntegratedDecisionGradients(linear).attribute(x, steps=60, coarse_steps=50)
    assert abs(float(r.weights[0].sum()) - 1) < 1e-6
    assert r.alphas[0].min() < 1 / 49 and r.alphas[0].max() > 48 / 49


def test_largest_remainder_sums_exactly_and_rounds_each_share():
    g = torch.Generator().manual_seed(1)
    raw = torch.rand(20, 49, generator=g, dtype=torch.float64) ** 4
    share = 50 * raw / raw.sum(1, keepdim=True)
    counts = largest_remainder(share, 50)
    assert (counts.sum(1) == 50).all()
    assert ((counts - share).abs() < 1).all()


@pytest.mark.parametrize("sampling", ["adaptive", "uniform"])
def test_adding_a_constant_to_the_logit_changes_nothing(sampling):
    x = torch.randn(3, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([0, 1, 2])
    a = IntegratedDecisionGradients(smooth_mlp()).attribute(x, target=t, sampling=sampling)
    b = IntegratedDecisionGradients(smooth_mlp(shift=7.0)).attribute(x, target=t,
                                                                    sampling=sampling)
    torch.testing.assert_close(a.attributions, b.attributions, rtol=1e-10, atol=1e-12)


def test_matches_float64_reference_quadrature():
    model, x, base, t, ref = reference_case()
    idg = IntegratedDecisionGradients(model)
    gl = idg.attribute(x, base, t, steps=40, sampling="uniform", rule="gausslegendre")
    torch.testing.assert_close(gl.attributions, ref, rtol=1e-9, atol=1e-12)
    # composite midpoint inside the adaptive sub-intervals: second order in the sample spacing
    ad = idg.attribute(x, base, t, steps=400, coarse_steps=50)
    scale = ref.abs().max()
    assert (ad.attributions - ref).abs().max() < 1e-4 * scale


def test_delta_is_the_ig_gap_of_the_same_samples():
    model = smooth_mlp()
    x = torch.randn(2, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    t = torch.tensor([1, 2])
    idg = IntegratedDecisionGradients(model).attribute(x, target=t, steps=7, sampling="uniform",
                                                       rule="riemann_middle")
    ig = IntegratedGradients(model).attribute(x, target=t, steps=7, rule="riemann_middle")
    torch.testing.assert_close(idg.delta, ig.delta, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(idg.info["output_delta"], ig.info["output_delta"])


def test_bad_arguments_and_model_state():
    model = smooth_mlp(torch.float32)
    model[0].weight.requires_grad_(True)
    x = torch.randn(2, 6)
    idg = IntegratedDecisionGradients(model)
    with pytest.raises(ValueError, match="sampling"):
        idg.attribute(x, target=0, sampling="random")
    with pytest.raises(ValueError, match="steps"):
        idg.attribute(x, target=0, steps=0)
    with pytest.raises(ValueError, match="coarse_steps"):
        idg.attribute(x, target=0, coarse_steps=1)
    with pytest.raises(ValueError, match="coarse_evaluations"):
        idg.attribute(x, target=0, coarse_evaluations=1)
    with pytest.raises(ValueError, match="out of range"):
        idg.attribute(x, target=9)
    assert model[0].weight.requires_grad and not model[0].training
    assert not model._forward_hooks and not model[0]._forward_hooks


class Counting(nn.Module):
    """Counts the rows each forward-only call evaluates."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.rows = inner, 0

    def forward(self, x):
        if not torch.is_grad_enabled():
            self.rows += len(x)
        return self.inner(x)


@pytest.mark.parametrize("coarse_evaluations, measured", [(25, 25), (None, 50), (80, 50)])
def test_the_coarse_pass_measures_only_coarse_evaluations_points(coarse_evaluations, measured):
    x = torch.randn(3, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(6))

    def rows(**kw):
        model = Counting(smooth_mlp())
        r = IntegratedDecisionGradients(model).attribute(x, target=0, steps=30, **kw)
        return model.rows, r.info.get("coarse_evaluations")

    uniform, _ = rows(sampling="uniform")  # no coarse pass at all
    got, n = rows(coarse_evaluations=coarse_evaluations)
    assert n == measured and got - uniform == 3 * (measured - 2)  # inner points x examples


def test_interpolated_coarse_values_keep_the_placement_and_the_accuracy():
    x = torch.full((2, 4), 0.25, dtype=torch.float64)
    idg = IntegratedDecisionGradients(Sigmoid1D())
    exact = idg.attribute(x, steps=50, coarse_evaluations=None)
    interp = idg.attribute(x, steps=50)
    for a, b in zip(interp.alphas, exact.alphas, strict=True):
        assert (a - b).abs().mean() < 0.01  # a sharp rise, read off 25 of the 50 points
    model, x, base, t, ref = reference_case()
    idg = IntegratedDecisionGradients(model)

    def error(**kw):
        r = idg.attribute(x, base, t, steps=50, **kw).attributions
        return float((r - ref).abs().max() / ref.abs().max())

    # the paper's pass and the interpolated one are equally far from the exact integral
    assert error() <= 1.1 * error(coarse_evaluations=None) < 5e-3


def test_coarse_values_interpolate_monotonically_and_exactly_at_the_measured_points():
    from pathattr.methods.idg import coarse_values

    pts = torch.linspace(0, 1, 50, dtype=torch.float64)
    measured = torch.linspace(0, 1, 8, dtype=torch.float64)
    f = torch.tensor(sigmoid_path(measured.numpy()))[None]
    v = coarse_values(pts, measured, f)
    assert (v.diff(dim=1) >= 0).all()  # PCHIP: monotone data stays monotone (no overshoot)
    torch.testing.assert_close(coarse_values(measured, measured, f), f)
    at = torch.tensor([torch.argmin((pts - m).abs()) for m in (0.0, 1.0)])
    torch.testing.assert_close(v[0, at], f[0, [0, -1]])
