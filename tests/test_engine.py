import pytest
import torch
from nets import cnn, mlp
from torch import nn

from pathattr import engine
from pathattr.engine import (
    ChunkSize,
    LayerPath,
    PathEngine,
    PointEvaluator,
    Tap,
    activation_bytes,
    chunk_size,
)
from pathattr.guard import model_guard
from pathattr.targets import resolve_target


def make(model, x, target=0, **kw):
    base = torch.zeros_like(x)
    return PathEngine(model, x, base, resolve_target(target, len(x), x.device), **kw)


def test_gradients_match_autograd_per_point():
    m = mlp(0)
    x = torch.randn(3, 6, dtype=torch.float64)
    e = make(m, x, target=[0, 1, 2], batch_size=4)
    rows = torch.tensor([0, 0, 1, 2, 2, 2, 1])
    alphas = torch.tensor([0.1, 0.9, 0.5, 0.0, 0.3, 1.0, 0.7], dtype=torch.float64)
    with model_guard(m):
        chunks = list(e.gradients(rows, alphas, taps=[Tap("1")], want_acts=True))
    assert [c.span for c in chunks] == [slice(0, 4), slice(4, 7)]
    for c in chunks:
        for r, a, out, g, gl, act in zip(c.rows, c.alphas, c.output, c.grads[0], c.grads[1],
                                         c.acts[0]):
            p = (a * x[r]).requires_grad_()
            h = m[1](m[0](p))
            f = m[4](m[3](m[2](h)))[[0, 1, 2][r]]
            gp, gh = torch.autograd.grad(f, [p, h])
            assert torch.allclose(out, f) and torch.allclose(g, gp) and torch.allclose(gl, gh)
            assert torch.allclose(act, h)


def test_layer_gradient_without_graph_below():
    m = cnn(0)
    x = torch.randn(2, 2, 5, 5, dtype=torch.float64)
    e = make(m, x, target=1, batch_size=2)
    rows, alphas = torch.tensor([0, 1]), torch.tensor([0.5, 1.0], dtype=torch.float64)
    seen = []
    m.conv1.register_forward_hook(lambda _m, _i, out: seen.append(out.requires_grad))
    with model_guard(m):
        (c,) = e.gradients(rows, alphas, taps=[Tap("act2")], input_grad=False)
        (full,) = e.gradients(rows, alphas, taps=[Tap("act2")])
    assert seen == [False, True]  # no autograd graph below the layer when not needed
    assert len(c.grads) == 1 and torch.allclose(c.grads[0], full.grads[1])


def test_layer_path_replaces_activation():
    m = mlp(1)
    x = torch.randn(2, 6, dtype=torch.float64)
    start, end = torch.randn(2, 12, dtype=torch.float64), torch.randn(2, 12, dtype=torch.float64)
    e = make(m, x, layer_path=LayerPath(["1"], [start], [end]))
    rows, alphas = torch.tensor([0, 1]), torch.tensor([0.25, 0.75], dtype=torch.float64)
    with model_guard(m):
        (c,) = e.gradients(rows, alphas)
    for i, a in enumerate([0.25, 0.75]):
        h = (start[i] + a * (end[i] - start[i])).requires_grad_()
        f = m[4](m[3](m[2](h)))[0]
        assert torch.allclose(c.output[i], f)
        assert torch.allclose(c.grads[0][i], torch.autograd.grad(f, h)[0])


def test_values_activations_endpoints():
    m = cnn(3)
    x = torch.randn(3, 2, 5, 5, dtype=torch.float64)
    e = make(m, x, target=2)
    f1, f0, _ = e.ends([])
    assert torch.allclose(f1, m(x)[:, 2]) and torch.allclose(f0, m(0 * x)[:, 2])
    rows, alphas = torch.tensor([2, 0]), torch.tensor([0.5, 0.2], dtype=torch.float64)
    acts, act2 = e.activations(["conv1", "act2"], rows, alphas)
    points = alphas.view(-1, 1, 1, 1) * x[rows]
    assert torch.allclose(acts, m.conv1(points))
    assert torch.allclose(act2, m.act2(m.conv2(m.act1(m.conv1(points)))))


def test_ends_read_layers_before_later_in_place_ops():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 5), nn.ReLU(inplace=True), nn.Linear(5, 2)).double().eval()
    x = torch.randn(3, 4, dtype=torch.float64)
    f1, f0, [(at_base, at_x)] = make(m, x, target=1).ends(["0"])
    assert torch.allclose(f1, m(x)[:, 1]) and torch.allclose(f0, m(0 * x)[:, 1])
    # The in-place ReLU after layer "0" must not reach the recorded activations (it would zero
    # the negative ones); the batch of 6 rows may round differently from m[0]'s batch of 3.
    torch.testing.assert_close(at_x, m[0](x), rtol=0, atol=1e-14)
    torch.testing.assert_close(at_base, m[0](0 * x), rtol=0, atol=1e-14)
    assert (at_x < 0).any()


def test_chunk_size():
    m = cnn(0)
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64)
    assert chunk_size(m, x, 7, 100) == 7
    per = activation_bytes(m, x)
    assert per > x.numel() * 8
    assert chunk_size(m, x, "auto", 100, budget=per * 5) == 5
    assert chunk_size(m, x, "auto", 3) == 3
    with pytest.raises(ValueError, match="batch_size"):
        chunk_size(m, x, -1, 10)


def test_chunk_size_is_checked_at_once_and_measured_once(monkeypatch):
    m = cnn(0)
    x = torch.randn(2, 2, 5, 5, dtype=torch.float64)
    with pytest.raises(ValueError, match="batch_size"):
        ChunkSize(m, x, 0)
    per = activation_bytes(m, x)
    calls = []
    monkeypatch.setattr(engine, "activation_bytes", lambda *a: calls.append(a) or per)
    size = ChunkSize(m, x, "auto", budget=per * 5)
    assert calls == []  # nothing measured until a pass asks
    assert [size(100), size(3), size(100)] == [5, 3, 5]
    assert len(calls) == 1


def test_point_evaluator_matches_autograd_at_each_point():
    from pathattr.forward import ModelCall, Packer

    m = cnn(0)
    x = torch.randn(5, 2, 5, 5, dtype=torch.float64)
    call = ModelCall(m, Packer.of([x], single=True), 5)
    at = PointEvaluator(call, ChunkSize(call, x, 2))
    target = resolve_target([0, 1, 2, 0, 1], 5, x.device)
    with model_guard(m):
        f, g = at.gradients(x, target)
        v = at.values(x, target)
    p = x.clone().requires_grad_()
    out = m(p)[torch.arange(5), torch.tensor([0, 1, 2, 0, 1])]
    (ref,) = torch.autograd.grad(out.sum(), p)
    torch.testing.assert_close(f, out.detach(), rtol=0, atol=1e-12)
    torch.testing.assert_close(v, out.detach(), rtol=0, atol=1e-12)
    torch.testing.assert_close(g, ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("method", ["guided", "blur", "agi"])
def test_point_methods_size_their_chunks_once_per_call(method, monkeypatch):
    from pathattr.methods.agi import AdversarialGradientIntegration
    from pathattr.methods.blur_ig import BlurIntegratedGradients as BlurIG
    from pathattr.methods.guided_ig import GuidedIntegratedGradients

    m = cnn(0)
    x = torch.randn(2, 2, 5, 5, dtype=torch.float64)
    measured = []
    real = engine.activation_bytes
    monkeypatch.setattr(engine, "activation_bytes", lambda *a: measured.append(1) or real(*a))
    explainer, kw = {
        "guided": (GuidedIntegratedGradients, {"steps": 6}),
        "blur": (BlurIG, {"steps": 6}),
        "agi": (AdversarialGradientIntegration, {"steps": 4, "epsilon": 0.05, "classes": 2}),
    }[method]
    r = explainer(m).attribute(x, target=0, **kw)
    assert torch.isfinite(r.attributions).all()
    assert len(measured) == 1
