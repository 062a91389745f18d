import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nets import TupleLayer, cnn, mlp
from torch import nn

import pathattr
from pathattr.baselines import Blur, Gaussian, Several, Uniform
from pathattr.quadrature import RULES

SETTINGS = settings(max_examples=15, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
seeds = st.integers(0, 10_000)


def ig(model, x, **kw):
    return pathattr.IntegratedGradients(model).attribute(x, **kw)


def rel_delta(r):
    return (r.delta.abs() / r.info["output_delta"].abs()).max().item()


@SETTINGS
@given(seeds, st.sampled_from([nn.Tanh, nn.Softplus]))
def test_completeness_smooth_mlp(seed, act):
    torch.manual_seed(seed)
    m = mlp(seed, act=act)
    x = torch.randn(3, 6, dtype=torch.float64)
    r = ig(m, x, target=1, steps=64)
    F = m(x)[:, 1] - m(torch.zeros_like(x))[:, 1]
    # within 1e-6 of the batch's output scale (an example whose F(x) - F(x') is near 0 has a
    # large relative gap at any step count)
    assert torch.allclose(r.attributions.sum(1), F, rtol=1e-6, atol=1e-6 * float(F.abs().max()))
    assert torch.allclose(r.delta, r.attributions.sum(1) - F, atol=1e-12)


@SETTINGS
@given(seeds)
def test_completeness_smooth_cnn(seed):
    m = cnn(seed)
    x = torch.randn(2, 2, 5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    r = ig(m, x, target=2, steps=48)
    assert r.delta.abs().max() <= 1e-6 * r.info["output_delta"].abs().max() + 1e-12


@SETTINGS
@given(seeds)
def test_sensitivity_and_dummy(seed):
    # F depends on x0 and x1 but never on x2: the dummy gets exactly zero; a feature that alone
    # changes the output (baseline differs only there) gets all of the change
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(2, 4, dtype=torch.float64, generator=g)

    def f(x):
        return torch.tanh(x[:, :2] @ w).sum(1, keepdim=True)

    x = torch.randn(2, 3, dtype=torch.float64, generator=g)
    r = ig(f, x, steps=32)
    assert torch.all(r.attributions[:, 2] == 0)
    base = x.clone()
    base[:, 0] += 1.0
    r = ig(f, x, baselines=base, steps=64)
    change = (f(x) - f(base))[:, 0]
    assert torch.allclose(r.attributions[:, 0], change, rtol=1e-6, atol=1e-10)
    assert torch.all(r.attributions[:, 1:] == 0)


@SETTINGS
@given(seeds)
def test_implementation_invariance(seed):
    m1 = mlp(seed)
    # the same function with hidden units permuted and a split final layer
    m2 = mlp(seed)
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        m2[0].weight.copy_(m1[0].weight[perm])
        m2[0].bias.copy_(m1[0].bias[perm])
        m2[2].weight.copy_(m1[2].weight[:, perm])
    x = torch.randn(3, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(seed + 1))
    assert torch.allclose(m1(x), m2(x), atol=1e-12)
    a1, a2 = ig(m1, x, target=0).attributions, ig(m2, x, target=0).attributions
    assert torch.allclose(a1, a2, atol=1e-10)


@SETTINGS
@given(seeds, st.floats(-2, 2), st.floats(-2, 2))
def test_linearity(seed, p, q):
    m1, m2 = mlp(seed), mlp(seed + 1)

    def combo(x):
        return p * m1(x) + q * m2(x)

    x = torch.randn(2, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    a = ig(combo, x, target=2, steps=16).attributions
    b1, b2 = (ig(f, x, target=2, steps=16).attributions for f in (m1, m2))
    b = p * b1 + q * b2
    assert torch.allclose(a, b, atol=1e-10)


@SETTINGS
@given(seeds)
def test_symmetry_preservation(seed):
    # F symmetric in x0 and x1; input and baseline equal in both: equal attributions
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(3, dtype=torch.float64, generator=g)

    def f(x):
        return torch.sigmoid(w[0] * (x[:, 0] + x[:, 1]) + w[1] * x[:, 2] + w[2] * x[:, 0] * x[:, 1])

    v = torch.randn(2, dtype=torch.float64, generator=g)
    x = torch.stack([v[0], v[0], v[1]])[None]
    a = ig(f, x, steps=32).attributions
    assert torch.allclose(a[0, 0], a[0, 1], atol=1e-12)


@pytest.mark.parametrize("rule", RULES)
def test_equals_captum(rule):
    from captum.attr import IntegratedGradients as CaptumIG
    m = mlp(3)
    x = torch.randn(4, 6, dtype=torch.float64)
    b = torch.randn(4, 6, dtype=torch.float64)
    method = {"gausslegendre": "gausslegendre"}.get(rule, rule)
    c = CaptumIG(m).attribute(x, b, target=2, n_steps=20, method=method)
    p = ig(m, x, baselines=b, target=2, steps=20, rule=rule).attributions
    if rule == "riemann_trapezoid":
        # Captum puts trapezoid nodes at k/(n-1) but weights 1/n (summing to (n-1)/n); ours
        # are the trapezoid rule's 1/(n-1), halved at the ends
        c = c * 20 / 19
    assert ((c - p).abs().max() / c.abs().max()).item() <= 1e-5


def test_quadrature_error_shrinks_with_steps():
    m = mlp(5, act=nn.Softplus)
    x = torch.randn(3, 6, dtype=torch.float64)
    errs = [rel_delta(ig(m, x, target=0, steps=s, rule="riemann_trapezoid")) for s in (4, 16, 64)]
    assert errs[0] > errs[1] > errs[2]


def test_auto_meets_tolerance_relu_net():
    m = mlp(7, act=nn.ReLU, hidden=32)
    x = torch.randn(4, 6, dtype=torch.float64) * 3
    r = ig(m, x, target=1, steps="auto", tol=1e-4, max_steps=2048)
    assert r.info["converged"].all()
    assert rel_delta(r) <= 1e-4
    assert isinstance(r.alphas, list) and len(r.alphas) == 4
    for a, w in zip(r.alphas, r.weights):
        assert torch.all(a[1:] > a[:-1]) and a.min() >= 0 and a.max() <= 1
        assert w.sum().item() == pytest.approx(1.0, abs=1e-12)
    # the reported nodes and weights are the quadrature that produced the attributions
    x0 = x[:1]
    grads = torch.autograd.functional.jacobian(
        lambda p: m(p)[:, 1].sum(), r.alphas[0][:, None] * x0)
    assert torch.allclose((r.weights[0][:, None] * grads).sum(0) * x0[0], r.attributions[0])


def test_auto_reads_values_to_the_host_per_round_not_per_point(monkeypatch):
    # on a GPU every read of a tensor's value waits for the device: the refinement reads one
    # array per round, never an element per point and target
    reads = {"element": 0, "any": 0}
    def counting(name):
        real = getattr(torch.Tensor, name)

        def counted(self, *a, **k):
            reads["any"] += 1
            reads["element"] += name in ("__float__", "item", "tolist")
            return real(self, *a, **k)
        return counted

    for name in ("__float__", "__int__", "__bool__", "item", "tolist", "numpy"):
        monkeypatch.setattr(torch.Tensor, name, counting(name))
    m = mlp(7, act=nn.ReLU, hidden=32)
    x = torch.randn(8, 6, dtype=torch.float64) * 3
    r = ig(m, x, target=torch.arange(8) % 3, steps="auto", tol=1e-4, max_steps=2048)
    monkeypatch.undo()
    evaluations = int(r.info["gradient_evaluations"].sum())
    assert evaluations > 500
    assert reads["element"] == 0 and reads["any"] < evaluations / 10


def test_auto_reports_exhausted_budget():
    m = mlp(8, act=nn.ReLU, hidden=32)
    x = torch.randn(2, 6, dtype=torch.float64) * 3
    r = ig(m, x, target=0, steps="auto", tol=1e-12, max_steps=24)
    assert not r.info["converged"].any()
    assert (r.info["gradient_evaluations"] <= 24).all()


def test_gradient_evaluations_have_one_type_for_fixed_and_auto_steps():
    from pathattr.baselines import Several

    m = mlp(8)
    x = torch.randn(3, 6, dtype=torch.float64)
    two = Several(torch.zeros(2, 6, dtype=torch.float64))
    fixed = ig(m, x, baselines=two, target=0, steps=7).info["gradient_evaluations"]
    auto = ig(m, x, baselines=two, target=0, steps="auto", tol=1e-3).info[
        "gradient_evaluations"]
    assert fixed.dtype == auto.dtype == torch.int64 and fixed.shape == auto.shape == (3,)
    assert fixed.tolist() == [14, 14, 14] and (auto >= 2 * 2).all()  # both baselines counted


def test_baseline_kinds():
    m = cnn(1)
    x = torch.randn(2, 2, 6, 6, dtype=torch.float64)
    for spec in [0.5, x[0], x * 0.1, "blur", Blur(2.0), Uniform(-1, 1, samples=3),
                 Gaussian(0.2, samples=2), Several(torch.randn(3, 2, 6, 6, dtype=torch.float64))]:
        r = ig(m, x, baselines=spec, target=1, steps=48)
        assert r.attributions.shape == x.shape
        assert r.delta.abs().max() < 1e-5 * r.info["output_delta"].abs().max()


def test_several_baselines_is_mean_of_single():
    m = mlp(2)
    x = torch.randn(2, 6, dtype=torch.float64)
    bs = torch.randn(3, 6, dtype=torch.float64)
    r = ig(m, x, baselines=Several(bs), target=0, steps=16)
    mean = sum(ig(m, x, baselines=b, target=0, steps=16).attributions for b in bs) / 3
    assert torch.allclose(r.attributions, mean, atol=1e-12)


def test_per_example_and_callable_targets():
    m = mlp(4)
    x = torch.randn(3, 6, dtype=torch.float64)
    r = ig(m, x, target=[0, 2, 1], steps=8).attributions
    for i, t in enumerate([0, 2, 1]):
        assert torch.allclose(r[i], ig(m, x[i:i + 1], target=t, steps=8).attributions[0])
    rc = ig(m, x, target=lambda out: out[:, 2] - out[:, 0], steps=8).attributions
    ref = ig(m, x, target=2, steps=8).attributions - ig(m, x, target=0, steps=8).attributions
    assert torch.allclose(rc, ref, atol=1e-12)


def test_chunking_does_not_change_result():
    m = cnn(2)
    x = torch.randn(3, 2, 5, 5, dtype=torch.float64)
    a = ig(m, x, target=0, steps=10, batch_size=1).attributions
    b = ig(m, x, target=0, steps=10, batch_size=7).attributions
    c = ig(m, x, target=0, steps=10).attributions
    assert torch.allclose(a, b, atol=1e-13) and torch.allclose(a, c, atol=1e-13)


def test_float32_close_to_float64():
    m = mlp(6)
    x = torch.randn(2, 6, dtype=torch.float64)
    a64 = ig(m, x, target=0).attributions
    a32 = ig(m.float(), x.float(), target=0).attributions
    assert a32.dtype == torch.float32
    assert torch.allclose(a32.double(), a64, atol=1e-5)


def test_layer_ig_on_input_layer_equals_ig():
    # the path in the first linear layer's *input* space is the input path itself
    m = mlp(9)
    x = torch.randn(3, 6, dtype=torch.float64)
    r = pathattr.LayerIntegratedGradients(m, "0").attribute(
        x, target=1, attribute_to_layer_input=True)
    assert torch.allclose(r.attributions, ig(m, x, target=1).attributions, atol=1e-12)


def test_layer_ig_completeness_on_embedding():
    torch.manual_seed(0)
    emb = nn.Embedding(10, 5).double()
    model = nn.Sequential(emb, nn.Flatten(), nn.Linear(15, 8), nn.Tanh(), nn.Linear(8, 2))
    model = model.double().eval()
    ids = torch.tensor([[1, 4, 7], [3, 3, 9]])
    r = pathattr.LayerIntegratedGradients(model, "0").attribute(ids, baselines=0, target=1,
                                                                steps=64)
    assert r.attributions.shape == (2, 3, 5)
    assert rel_delta(r) < 1e-6


def test_saliency_and_input_x_gradient():
    w = torch.tensor([[1.0, -2.0, 3.0]], dtype=torch.float64)

    def lin(x):
        return x @ w.T

    x = torch.tensor([[2.0, 1.0, -1.0]], dtype=torch.float64)
    assert torch.equal(pathattr.Saliency(lin).attribute(x).attributions, w.abs())
    assert torch.equal(pathattr.Saliency(lin).attribute(x, abs=False).attributions, w)
    assert torch.equal(pathattr.InputXGradient(lin).attribute(x).attributions, x * w)


def test_auto_meets_tolerance_on_efficientnet(effnet, photos2):
    target = effnet(photos2).argmax(1)
    r = ig(effnet, photos2, target=target, steps="auto", tol=0.01)
    assert r.info["converged"].all()
    assert rel_delta(r) <= 0.01
    # the exact endpoints the delta is measured against
    with torch.no_grad():
        out = effnet(torch.cat([photos2, torch.zeros_like(photos2)]))
    change = out[:2].gather(1, target[:, None])[:, 0] - out[2:].gather(1, target[:, None])[:, 0]
    assert torch.allclose(r.info["output_delta"], change, rtol=1e-4)


def test_layer_ig_attributes_a_layer_of_several_tensors_as_a_whole():
    """A tuple of attributions, one per tensor; linear after the layer, so their sum is the
    output change from plain forwards to rounding, and each part equals LayerIG on the two
    elements named together."""
    model = TupleLayer().double().eval()
    x, x0 = torch.randn(3, 3, dtype=torch.float64), torch.randn(3, 3, dtype=torch.float64)
    r = pathattr.LayerIntegratedGradients(model, "pair").attribute(x, x0, target=1, steps=8)
    assert isinstance(r.attributions, tuple) and len(r.attributions) == 2
    with torch.no_grad():
        change = model(x)[:, 1] - model(x0)[:, 1]
    total = sum(a.sum(1) for a in r.attributions)
    torch.testing.assert_close(total, change, rtol=0, atol=1e-12)
    named = pathattr.LayerIntegratedGradients(model, ["pair[0]", "pair[1]"]).attribute(
        x, x0, target=1, steps=8)
    for a, b in zip(r.attributions, named.attributions):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
