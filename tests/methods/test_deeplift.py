"""DeepLIFT Rescale / RevealCancel: summation-to-delta, hand-computed multipliers, Captum,
operation coverage, errors, batch independence and model state."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pathattr.baselines import Several
from pathattr.methods.deeplift import DeepLift, LayerDeepLift, NoDeepLiftRule

RULES = ["rescale", "revealcancel"]
ACTIVATIONS = [nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh,
               nn.Softplus, nn.Hardswish, nn.Hardsigmoid]


def relative_gap(r) -> float:
    return (r.delta.abs() / r.info["output_delta"].abs()).max().item()


def widest_target(model, x, base) -> torch.Tensor:
    """Per example the output that moves most between baseline and input, so that a relative
    summation-to-delta error is not dominated by rounding in a tiny ``F(x) - F(x')``."""
    with torch.no_grad():
        return (model(x) - model(base)).abs().argmax(1)


def mlp(dtype=torch.float32, seed=0) -> nn.Module:
    """One layer per supported activation (module form), weights large enough that the
    signal survives eleven saturating layers."""
    torch.manual_seed(seed)
    layers, width = [], 6
    for act in ACTIVATIONS:
        layers += [nn.Linear(width, 8), act()]
        nn.init.normal_(layers[-2].weight, std=2.0 / width ** 0.5)
        width = 8
    return nn.Sequential(*layers, nn.Linear(8, 3)).to(dtype).eval()


def _randomize_bn(bn: nn.Module) -> None:
    with torch.no_grad():
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.normal_()  # some channels get a negative scale
        bn.bias.normal_()


def cnn(dtype=torch.float32, seed=0) -> nn.Module:
    torch.manual_seed(seed)
    m = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU6(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1), nn.ELU(), nn.AvgPool2d(2),
        nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8), nn.SiLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(8, 6), nn.Tanh(), nn.Linear(6, 4))
    for layer in (m[12], m[14]):
        nn.init.normal_(layer.weight, std=2.0)
    _randomize_bn(m[1])
    _randomize_bn(m[8])
    return m.to(dtype).eval()


class ResidualNet(nn.Module):
    """A ReLU module called three times, functional activations, x * sigmoid(x), residuals."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(5, 8)
        self.relu = nn.ReLU()
        self.a, self.b, self.out = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 3)

    def forward(self, x):
        h = self.relu(self.inp(x))
        h = h + self.relu(self.a(h))
        g = self.b(h)
        h = h + F.relu(g) + torch.sigmoid(g) + g * torch.sigmoid(g)
        return self.out(self.relu(h))


def residual(dtype=torch.float32) -> nn.Module:
    torch.manual_seed(0)
    return ResidualNet().to(dtype).eval()


NETS = {"mlp": (mlp, (4, 6)), "cnn": (cnn, (4, 3, 8, 8)), "residual": (residual, (4, 5))}


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
@pytest.mark.parametrize("net", NETS)
def test_summation_to_delta(net, dtype, tol, rule):
    make, shape = NETS[net]
    model = make(dtype=dtype)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(shape, generator=g, dtype=dtype)
    base = 0.3 * torch.randn(shape, generator=g, dtype=dtype)
    r = DeepLift(model, rule).attribute(x, base, target=widest_target(model, x, base))
    assert r.attributions.shape == x.shape
    assert relative_gap(r) <= tol
    assert r.info["nonlinearity"] == rule


def test_every_call_of_a_reused_module_gets_a_rule():
    model = ResidualNet().eval()
    x = torch.randn(3, 5)
    r = DeepLift(model, "revealcancel").attribute(x, target=0)
    counts = r.info["rules"]
    # self.relu x3, F.relu, torch.sigmoid x2 = 6 nonlinearities, one product g * sigmoid(g).
    # RevealCancel where the input comes straight from a Linear: inp, a, and F.relu(g),
    # torch.sigmoid(g) twice (g = b(h)); the last self.relu follows an addition (Rescale).
    assert counts == {"revealcancel": 5, "rescale": 1, "product": 1}


@pytest.mark.slow
@pytest.mark.parametrize("rule", RULES)
def test_efficientnet_summation_to_delta(rule, effnet, photos2):
    with torch.no_grad():
        target = effnet(photos2).argmax(1)
    r = DeepLift(effnet, rule).attribute(photos2, target=target)
    assert relative_gap(r) <= 1e-5
    counts = r.info["rules"]
    if rule == "revealcancel":
        # every ReLU6 call (the module is called twice per block) follows conv + batch norm
        assert set(counts) == {"revealcancel"} and counts["revealcancel"] >= 30
    else:
        assert set(counts) == {"rescale"} and counts["rescale"] >= 30


def test_rescale_equals_captum_on_relu_cnn():
    from captum.attr import DeepLift as CaptumDeepLift
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Conv2d(8, 16, 3),
        nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(64, 10), nn.ReLU(),
        nn.Linear(10, 4)).eval()
    x, base = torch.randn(5, 3, 12, 12), 0.1 * torch.randn(5, 3, 12, 12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = CaptumDeepLift(model).attribute(x, baselines=base, target=2).detach()
    ours = DeepLift(model, "rescale").attribute(x, base, target=2).attributions
    assert (ours - expected).abs().max() <= 1e-5 * expected.abs().max()


def hand_mlp() -> nn.Module:
    """2 inputs -> 2 hidden ReLU -> 1 output; the numbers below are derived by hand."""
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1)).double().eval()
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[2.0, -1.0], [1.0, 1.0]]))
        model[0].bias.copy_(torch.tensor([0.0, -1.0]))
        model[2].weight.copy_(torch.tensor([[1.0, 2.0]]))
        model[2].bias.zero_()
    return model


def test_reveal_cancel_hand_computed():
    # x = (1, 3), x' = (0, 0).
    # Neuron 1: z' = 0, terms 2*1 = +2 and -1*3 = -3, so dz+ = 2, dz- = -3, z = -1.
    #   dy+ = [f(2) - f(0)]/2 + [f(-1) - f(-3)]/2 = 1;   m+ = 1/2
    #   dy- = [f(-3) - f(0)]/2 + [f(-1) - f(2)]/2 = -1;  m- = 1/3   (Rescale: dy/dz = 0)
    # Neuron 2: z' = -1, terms +1 and +3: dz+ = 4, dz- = 0, z = 3.
    #   dy+ = [f(3) - f(-1)]/2 + [f(3) - f(-1)]/2 = 3;   m+ = 3/4
    # Output weights (1, 2):
    #   C_1 = 1 * (2 * 1/2) + 2 * (1 * 3/4) = 2.5;   C_2 = 1 * (-3 * 1/3) + 2 * (3 * 3/4) = 3.5
    # Rescale: C_1 = 2 * (1 * 3/4) = 1.5,  C_2 = 2 * (3 * 3/4) = 4.5.   F(x) - F(x') = 6.
    model = hand_mlp()
    x = torch.tensor([[1.0, 3.0], [3.0, 1.0]], dtype=torch.float64)
    rc = DeepLift(model, "revealcancel").attribute(x, target=None)
    rs = DeepLift(model, "rescale").attribute(x, target=None)
    # Second example x = (3, 1): neuron 1 terms +6, -1, z = 5:
    #   dy+ = [f(6) - f(0)]/2 + [f(5) - f(-1)]/2 = 5.5, m+ = 11/12;
    #   dy- = [f(-1) - f(0)]/2 + [f(5) - f(6)]/2 = -0.5, m- = 1/2   (Rescale: 5/5 = 1)
    # neuron 2 terms +3, +1, z = 3: m+ = 3/4.
    #   C_1 = 6 * 11/12 + 2 * 3 * 3/4 = 10,  C_2 = -1/2 + 2 * 3/4 = 1
    #   Rescale: C_1 = 6 + 4.5 = 10.5,  C_2 = -1 + 1.5 = 0.5
    torch.testing.assert_close(rc.attributions, torch.tensor([[2.5, 3.5], [10.0, 1.0]],
                                                             dtype=torch.float64))
    torch.testing.assert_close(rs.attributions, torch.tensor([[1.5, 4.5], [10.5, 0.5]],
                                                             dtype=torch.float64))
    torch.testing.assert_close(rc.info["output_delta"], torch.tensor([6.0, 11.0],
                                                                     dtype=torch.float64))


def reveal_cancel_reference(weights, biases, x, x0):
    """DeepLIFT RevealCancel for a ReLU MLP, written from the formulas with numpy loops.

    Conventions shared with the implementation: a part below 1e-7 takes the Rescale multiplier,
    and a term that is exactly zero takes the mean of m+ and m-.
    """
    relu = lambda v: np.maximum(v, 0.0)  # noqa: E731
    acts, acts0 = [x], [x0]
    for w, b in zip(weights[:-1], biases[:-1], strict=True):
        acts.append(relu(w @ acts[-1] + b))
        acts0.append(relu(w @ acts0[-1] + b))
    mult = weights[-1][0].copy()  # multipliers of the output w.r.t. the last hidden layer
    for w, b, a, a0 in reversed(list(zip(weights[:-1], biases[:-1], acts[:-1], acts0[:-1],
                                                   strict=True))):
        da = a - a0
        z0 = w @ a0 + b
        new = np.zeros_like(a)
        for i in range(w.shape[0]):
            terms = w[i] * da
            dp, dn = terms[terms > 0].sum(), terms[terms < 0].sum()
            z = z0[i] + dp + dn
            dz, dy = dp + dn, relu(z) - relu(z0[i])
            m = dy / dz if abs(dz) >= 1e-7 else float(z > 0)
            yp = (relu(z0[i] + dp) - relu(z0[i])) / 2 + (relu(z) - relu(z0[i] + dn)) / 2
            yn = (relu(z0[i] + dn) - relu(z0[i])) / 2 + (relu(z) - relu(z0[i] + dp)) / 2
            mp = yp / dp if abs(dp) >= 1e-7 else m
            mn = yn / dn if abs(dn) >= 1e-7 else m
            for j in range(len(a)):
                route = mp if terms[j] > 0 else mn if terms[j] < 0 else (mp + mn) / 2
                new[j] += mult[i] * w[i, j] * route
        mult = new
    return (x - x0) * mult


def test_reveal_cancel_equals_reference_on_deep_mlp():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(7, 9), nn.ReLU(), nn.Linear(9, 6), nn.ReLU(),
                          nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 1)).double().eval()
    weights = [m.weight.detach().numpy() for m in model if isinstance(m, nn.Linear)]
    biases = [m.bias.detach().numpy() for m in model if isinstance(m, nn.Linear)]
    x, x0 = torch.randn(4, 7, dtype=torch.float64), torch.randn(4, 7, dtype=torch.float64)
    r = DeepLift(model, "revealcancel").attribute(x, x0)
    expected = np.stack([reveal_cancel_reference(weights, biases, xi, x0i)
                         for xi, x0i in zip(x.numpy(), x0.numpy(), strict=True)])
    np.testing.assert_allclose(r.attributions.numpy(), expected, rtol=1e-10, atol=1e-12)
    assert relative_gap(r) <= 1e-10


def test_reveal_cancel_conv_and_batch_norm_equal_their_dense_form():
    """Conv1d + BatchNorm (some negative scales) is one affine map W x + b: RevealCancel must
    give the same contributions on the conv net and on the dense net with W unrolled."""
    torch.manual_seed(4)
    conv, bn = nn.Conv1d(2, 3, 3, padding=1).double(), nn.BatchNorm1d(3).double()
    _randomize_bn(bn)
    bn.weight.data[0] = -abs(bn.weight.data[0])
    head = nn.Linear(3 * 6, 2).double()
    conv_net = nn.Sequential(conv, bn, nn.Tanh(), nn.Flatten(), head).eval()
    with torch.no_grad():
        eye = torch.eye(12, dtype=torch.float64).view(12, 2, 6)
        affine0 = bn(conv(torch.zeros(1, 2, 6, dtype=torch.float64))).flatten()
        w = (bn(conv(eye)).flatten(1) - affine0).T
        dense = nn.Linear(12, 18).double()
        dense.weight.copy_(w)
        dense.bias.copy_(affine0)
    dense_net = nn.Sequential(nn.Flatten(), dense, nn.Tanh(), head).eval()
    x, x0 = torch.randn(3, 2, 6, dtype=torch.float64), torch.randn(3, 2, 6, dtype=torch.float64)
    a = DeepLift(conv_net, "revealcancel").attribute(x, x0, target=1)
    b = DeepLift(dense_net, "revealcancel").attribute(x, x0, target=1)
    assert a.info["rules"] == b.info["rules"] == {"revealcancel": 1}
    torch.testing.assert_close(a.attributions, b.attributions, rtol=1e-9, atol=1e-12)
    rescale = DeepLift(conv_net, "rescale").attribute(x, x0, target=1)
    assert not torch.allclose(a.attributions, rescale.attributions)


def test_product_of_two_varying_tensors_is_split_exactly():
    # d(x * x) = dx (x + x') / 2 * 2 = x^2 - x'^2 per feature.
    class Square(nn.Module):
        def forward(self, x):
            return (x * x).sum(1)
    x, x0 = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    r = DeepLift(Square()).attribute(x, x0)
    torch.testing.assert_close(r.attributions, x ** 2 - x0 ** 2)


def test_maxpool_credits_the_window_change_to_one_element():
    # Window 1: x = (1, 3), x' = (2, 0): max rose 2 -> 3, credited to argmax at x (index 1).
    # Window 2: x = (0, 1), x' = (5, 0): max fell 5 -> 1, credited to argmax at x' (index 0).
    class Pool(nn.Module):
        def forward(self, x):
            return F.max_pool1d(x, 2).sum((1, 2))
    x = torch.tensor([[[1.0, 3.0, 0.0, 1.0]]], dtype=torch.float64)
    x0 = torch.tensor([[[2.0, 0.0, 5.0, 0.0]]], dtype=torch.float64)
    r = DeepLift(Pool()).attribute(x, x0)
    torch.testing.assert_close(r.attributions,
                               torch.tensor([[[0.0, 1.0, -4.0, 0.0]]], dtype=torch.float64))


@pytest.mark.parametrize("rule", RULES)
def test_batch_independence(rule):
    model = cnn(torch.float64)
    x, x0 = torch.randn(5, 3, 8, 8, dtype=torch.float64), torch.randn(5, 3, 8, 8,
                                                                      dtype=torch.float64)
    together = DeepLift(model, rule).attribute(x, x0, target=3).attributions
    alone = torch.cat([DeepLift(model, rule).attribute(x[i:i + 1], x0[i:i + 1], target=3)
                       .attributions for i in range(5)])
    torch.testing.assert_close(together, alone, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("rule", RULES)
def test_several_baselines_average_like_deeplift_shap(rule):
    model = mlp(torch.float64)
    x, bases = torch.randn(3, 6, dtype=torch.float64), torch.randn(4, 6, dtype=torch.float64)
    r = DeepLift(model, rule).attribute(x, Several(bases), target=1)
    single = [DeepLift(model, rule).attribute(x, b.expand_as(x), target=1) for b in bases]
    torch.testing.assert_close(r.attributions, sum(s.attributions for s in single) / 4)
    torch.testing.assert_close(r.info["output_delta"],
                               sum(s.info["output_delta"] for s in single) / 4)
    assert r.delta.abs().max() <= 1e-10


class SortInside(nn.Module):
    """An op without a DeepLIFT rule (sorting) inside a model."""

    def forward(self, x):
        return x.sort(dim=1).values * 3 + x


class CustomSwish(torch.autograd.Function):
    @staticmethod
    def forward(ctx, i):
        return i * torch.sigmoid(i)

    @staticmethod
    def backward(ctx, g):
        return g


class Wrap(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


@pytest.mark.parametrize("model,name", [
    (SortInside(), "Tensor.sort"),
    (Wrap(torch.atan), "torch.atan"),
    (Wrap(lambda x: x.cumprod(1)), "Tensor.cumprod"),
    (Wrap(lambda x: x * (x > 0)), "Tensor.gt"),
    (Wrap(lambda x: x / x.norm(dim=1, keepdim=True)), "Tensor.norm"),
    (Wrap(CustomSwish.apply), "torch.sigmoid"),
])
def test_operation_without_rule_raises_naming_it(model, name):
    with pytest.raises(NoDeepLiftRule, match=name):
        DeepLift(model.eval()).attribute(torch.randn(2, 4), target=0)


def test_control_flow_that_differs_between_input_and_reference_is_refused():
    # .item() leaves the mode's view, so the branch is taken on the value: tanh for the zero
    # reference, relu for the positive input
    branchy = Wrap(lambda x: torch.relu(x) if x.sum().item() > 0 else torch.tanh(x))
    with pytest.raises(NoDeepLiftRule, match="different operations.*relu.*tanh"):
        DeepLift(branchy.eval()).attribute(torch.ones(2, 4), target=0)


def test_in_place_change_of_a_recorded_value_is_refused():
    def late_in_place(x):
        z = x * 2
        y = torch.tanh(z)
        z.add_(1)  # changes the tanh input that the input run needs for its reference
        return y + z

    with pytest.raises(NoDeepLiftRule, match="in place"):
        DeepLift(Wrap(late_in_place).eval()).attribute(torch.randn(2, 4), target=0)


def test_gradient_fallback_warns_and_reports_its_gap():
    with pytest.warns(UserWarning, match="atan"):
        r = DeepLift(Wrap(lambda x: torch.atan(3 * x)), allow_gradient_fallback=True).attribute(
            torch.randn(2, 4), target=0)
    assert r.info["rules"] == {"fallback:torch.atan": 1}
    assert r.delta.abs().max() > 1e-6  # the gradient breaks summation-to-delta, and says so


def _state(model: nn.Module):
    return ([m.training for m in model.modules()],
            [p.requires_grad for p in model.parameters()],
            [(dict(m._forward_hooks), dict(m._forward_pre_hooks), dict(m._backward_hooks))
             for m in model.modules()])


@pytest.mark.parametrize("fails", [False, True])
def test_model_state_restored(fails):
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), SortInside() if fails else nn.Tanh(),
                          nn.Linear(4, 2)).eval()
    model[0].weight.requires_grad_(False)
    model[1].register_forward_hook(lambda *a: None)
    model[3].training = True  # a harmless flag the call must not touch
    before = _state(model)
    if fails:
        with pytest.raises(NoDeepLiftRule):
            LayerDeepLift(model, "1", "revealcancel").attribute(torch.randn(2, 4), target=0)
    else:
        DeepLift(model, "revealcancel").attribute(torch.randn(2, 4), target=0)
    assert _state(model) == before
    assert torch._C._len_torch_function_stack() == 0
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("layer,use_input", [("3", False), ("4", False), ("5", True)])
def test_layer_summation_to_delta(rule, layer, use_input):
    model = cnn(torch.float64)
    x, x0 = torch.randn(3, 3, 8, 8, dtype=torch.float64), torch.randn(3, 3, 8, 8,
                                                                      dtype=torch.float64)
    r = LayerDeepLift(model, layer, rule).attribute(x, x0, target=2,
                                                    attribute_to_layer_input=use_input)
    assert r.attributions.shape[0] == 3 and r.info["layer"] == layer
    assert relative_gap(r) <= 1e-10


def test_layer_contributions_hand_computed():
    # Hidden ReLU output of the hand MLP at x = (1, 3): h = (0, 3), h' = (0, 0), weights (1, 2).
    r = LayerDeepLift(hand_mlp(), "1").attribute(torch.tensor([[1.0, 3.0]], dtype=torch.float64))
    torch.testing.assert_close(r.attributions, torch.tensor([[0.0, 6.0]], dtype=torch.float64))


def test_layer_called_twice_is_refused():
    with pytest.raises(RuntimeError, match="executed 3 times"):
        LayerDeepLift(ResidualNet().eval(), "relu").attribute(torch.randn(2, 5), target=0)


def test_bad_arguments():
    model = mlp()
    with pytest.raises(ValueError, match="nonlinearity must be one of rescale, revealcancel"):
        DeepLift(model, "guided")
    with pytest.raises(TypeError, match="floating"):
        DeepLift(model).attribute(torch.ones(2, 6, dtype=torch.long), target=0)
    with pytest.raises(ValueError, match="baselines"):
        DeepLift(model).attribute(torch.randn(2, 6), torch.zeros(3, 5), target=0)
    with pytest.raises(TypeError, match="nn.Module"):
        DeepLift(lambda x: x)
    with pytest.raises(ValueError, match="unknown layer"):
        LayerDeepLift(model, "99")


@pytest.mark.parametrize("rule", ["rescale", "revealcancel"])
def test_user_backward_hooks_neither_break_nor_change_it(rule):
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)).double().eval()
    x, ref = torch.randn(4, 6, dtype=torch.float64), torch.zeros(4, 6, dtype=torch.float64)
    plain = DeepLift(net, nonlinearity=rule).attribute(x, ref, target=1)
    seen = []
    net[1].register_full_backward_hook(lambda m, gi, go: seen.append("full"))
    net[2].register_full_backward_pre_hook(lambda m, go: seen.append("pre"))
    hooked = DeepLift(net, nonlinearity=rule).attribute(x, ref, target=1)
    torch.testing.assert_close(hooked.attributions, plain.attributions, rtol=0, atol=1e-12)
    assert hooked.delta.abs().max() < 1e-10
    assert "full" in seen and "pre" in seen  # the user's hooks ran, and are still there
    assert len(net[1]._backward_hooks) == 1 and len(net[2]._backward_pre_hooks) == 1


@pytest.mark.parametrize("rule", RULES)
def test_chunks_give_the_unchunked_result(rule):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3),
                        nn.Tanh()).double().eval()
    x = torch.randn(5, 2, 6, 6, dtype=torch.float64)
    base = Several(torch.zeros(2, 2, 6, 6, dtype=torch.float64) + torch.tensor([0.0, 0.3],
                   dtype=torch.float64).view(2, 1, 1, 1))
    whole = DeepLift(net, rule).attribute(x, base, target=1)
    for bs in (1, 3):
        chunked = DeepLift(net, rule).attribute(x, base, target=1, batch_size=bs)
        torch.testing.assert_close(chunked.attributions, whole.attributions, rtol=0,
                                   atol=1e-13)
        torch.testing.assert_close(chunked.info["deltas"], whole.info["deltas"], rtol=0,
                                   atol=1e-13)
    layer = LayerDeepLift(net, "1", rule)
    torch.testing.assert_close(layer.attribute(x, base, target=1, batch_size=2).attributions,
                               layer.attribute(x, base, target=1).attributions, rtol=0,
                               atol=1e-13)


def multi_relu_model():
    from captum.testing.helpers.basic_models import BasicModel_MultiLayer

    return BasicModel_MultiLayer(multi_input_module=True).eval()


@pytest.mark.parametrize("to_input", [False, True])
def test_layer_of_several_tensors_equals_captum_and_sums_jointly(to_input):
    from captum.attr import LayerDeepLift as CaptumLayerDeepLift

    model = multi_relu_model()
    x = torch.tensor([[-10.0, 1.0, -5.0], [1.9, 2.0, 1.9]])
    base = torch.tensor([[1.0, -2.0, 3.0], [0.0, 0.5, -0.3]])
    r = LayerDeepLift(model, "multi_relu").attribute(x, base, target=0,
                                                     attribute_to_layer_input=to_input)
    ref = CaptumLayerDeepLift(model, model.multi_relu).attribute(
        x, base, target=0, attribute_to_layer_input=to_input)
    assert isinstance(r.attributions, tuple) and len(r.attributions) == 2
    for ours, theirs in zip(r.attributions, ref):
        torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)
    with torch.no_grad():
        change = model(x)[:, 0] - model(base)[:, 0]
    total = sum(a.sum(1) for a in r.attributions)
    torch.testing.assert_close(total, change, rtol=0, atol=1e-5)
    torch.testing.assert_close(r.delta, total - change, rtol=0, atol=1e-6)
    assert r.info["layer"] == (["multi_relu[0]", "multi_relu[1]"])
    one = LayerDeepLift(model, "multi_relu[1]").attribute(x, base, target=0,
                                                          attribute_to_layer_input=to_input)
    torch.testing.assert_close(one.attributions, r.attributions[1])
