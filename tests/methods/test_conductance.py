"""Conductance: LayerConductance (total conductance = Neuron IG) and NeuronConductance.

The reference below is Dhamdhere's formula taken literally: at each Gauss-Legendre node, the
explicit Jacobian of the layer with respect to the input and the gradient of the output with
respect to the layer, combined feature by feature. It shares no code with the library.
"""

from __future__ import annotations

from collections import OrderedDict
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from nets import TupleLayer
from torch import Tensor, nn
from torch.func import grad, jacrev, vmap

from pathattr.layers import LayerNotExecuted
from pathattr.methods.conductance import LayerConductance, NeuronConductance

D = torch.float64


# ---------------------------------------------------------------- models and the reference


def tanh_mlp(seed: int, widths=(6, 9, 7, 4)) -> nn.Sequential:
    torch.manual_seed(seed)
    layers = OrderedDict()
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        layers[f"fc{i}"] = nn.Linear(a, b)
        if i < len(widths) - 2:
            layers[f"act{i}"] = nn.Tanh()
    return nn.Sequential(layers).to(D).eval()


def small_cnn(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(2, 4, 3, padding=1), act1=nn.Tanh(),
        conv2=nn.Conv2d(4, 5, 3), act2=nn.Softplus(),
        flat=nn.Flatten(), fc=nn.Linear(5 * 4 * 4, 3))).to(D).eval()


def split(model: nn.Sequential, layer: str) -> tuple[nn.Sequential, nn.Sequential]:
    """The model as ``top(bottom(x))`` with ``bottom`` ending at ``layer``."""
    names = [n for n, _ in model.named_children()]
    cut = names.index(layer) + 1
    return model[:cut], model[cut:]


def dhamdhere_reference(model: nn.Sequential, layer: str, x: Tensor, x0: Tensor, target: int,
                        nodes: int = 16) -> Tensor:
    """Cond_i^y = (x_i - x'_i) int dF/dy dy/dx_i da, for every neuron y and feature i.

    Returns ``(B, *layer_shape, *x_shape[1:])``. Gauss-Legendre on the derivative form is
    spectrally accurate on smooth nets, so this is exact to rounding.
    """
    bottom, top = split(model, layer)
    a, w = np.polynomial.legendre.leggauss(nodes)
    a, w = torch.as_tensor((a + 1) / 2, dtype=x.dtype), torch.as_tensor(w / 2, dtype=x.dtype)
    out = []
    for xb, x0b in zip(x, x0, strict=True):
        points = x0b + a.reshape(-1, *([1] * xb.dim())) * (xb - x0b)      # (m, *S)
        jac_y = vmap(jacrev(lambda v: bottom(v[None])[0]))(points)        # (m, *L, *S)
        ys = bottom(points)                                                # (m, *L)
        grad_f = vmap(grad(lambda y: top(y[None])[0, target]))(ys)         # (m, *L)
        wg = (w.reshape(-1, *([1] * (ys.dim() - 1))) * grad_f).reshape(*ys.shape,
                                                                         *([1] * xb.dim()))
        out.append((wg * jac_y).sum(0) * (xb - x0b))
    return torch.stack(out).detach()


def assert_close_rel(actual: Tensor, expected: Tensor, rel: float) -> None:
    """Every entry within ``rel`` times the largest magnitude of ``expected``."""
    scale = expected.abs().max().item()
    err = (actual - expected).abs().max().item()
    assert err <= rel * scale, f"max error {err:.3g} > {rel:g} x {scale:.3g}"


# ---------------------------------------------------------------- total conductance


@pytest.mark.parametrize("layer", ["fc0", "act0", "fc1", "act1"])
def test_layer_conductance_equals_dhamdhere_reference_on_mlp(layer):
    model = tanh_mlp(0)
    torch.manual_seed(1)
    x, x0 = torch.randn(3, 6, dtype=D), torch.randn(3, 6, dtype=D)
    ref = dhamdhere_reference(model, layer, x, x0, target=2).sum(-1)
    r = LayerConductance(model, layer).attribute(x, baselines=x0, target=2, steps=256)
    assert r.attributions.shape == ref.shape
    assert_close_rel(r.attributions, ref, 1e-6)


@pytest.mark.parametrize("layer", ["conv1", "act1", "conv2", "act2"])
def test_layer_conductance_equals_dhamdhere_reference_on_cnn(layer):
    model = small_cnn(0)
    torch.manual_seed(2)
    x, x0 = torch.randn(2, 2, 6, 6, dtype=D), 0.1 * torch.randn(2, 2, 6, 6, dtype=D)
    ref = dhamdhere_reference(model, layer, x, x0, target=1, nodes=16).flatten(-3).sum(-1)
    r = LayerConductance(model, layer).attribute(x, baselines=x0, target=1, steps=256)
    assert r.attributions.shape == ref.shape
    assert_close_rel(r.attributions, ref, 1e-6)
    assert r.neuron_totals().shape == (2, ref.shape[1])
    torch.testing.assert_close(r.neuron_totals(), ref.flatten(2).sum(2), rtol=1e-5, atol=1e-7)


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 10_000), hidden=st.integers(2, 8), depth=st.integers(1, 3))
def test_layer_conductance_equals_reference_on_random_mlps(seed, hidden, depth):
    widths = (4, *([hidden] * depth), 3)
    model = tanh_mlp(seed, widths)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 4, dtype=D, generator=g)
    ref = dhamdhere_reference(model, "act0", x, torch.zeros_like(x), target=0, nodes=16).sum(-1)
    r = LayerConductance(model, "act0").attribute(x, target=0, steps=512)
    assert_close_rel(r.attributions, ref, 1e-6)


@pytest.mark.parametrize("rule", ["gausslegendre", "riemann_trapezoid", "riemann_middle",
                                  "riemann_right", "riemann_left"])
def test_completeness_gap_shrinks_with_steps(rule):
    model = small_cnn(3)
    torch.manual_seed(4)
    x = torch.randn(2, 2, 6, 6, dtype=D)
    gaps = []
    for steps in (4, 16, 64):
        r = LayerConductance(model, "act1").attribute(x, target=0, steps=steps, rule=rule)
        gaps.append(r.relative_delta().max().item())
    assert gaps[0] > gaps[1] > gaps[2]
    assert gaps[2] < (1e-2 if rule.endswith(("left", "right")) else 1e-4)


def test_layer_feeding_the_output_linearly_is_exact_for_every_rule():
    # F is linear in the last hidden layer, so the cell differences integrate it exactly.
    model = tanh_mlp(5)
    x = torch.randn(2, 6, dtype=D)
    for rule in ("gausslegendre", "riemann_left", "riemann_right", "riemann_trapezoid"):
        r = LayerConductance(model, "act1").attribute(x, target=1, steps=3, rule=rule)
        assert r.delta.abs().max() < 1e-12


def test_hidden_path_includes_both_endpoints():
    # With one Gauss-Legendre node the conductance is dF/dy(1/2) * (y(x) - y(x')): the hidden
    # path runs from the baseline's activation to the input's even though no node sits there.
    model = tanh_mlp(6)
    x, x0 = torch.randn(1, 6, dtype=D), torch.randn(1, 6, dtype=D)
    bottom, top = split(model, "act0")
    mid = bottom(x0 + 0.5 * (x - x0)).detach().requires_grad_(True)
    (g,) = torch.autograd.grad(top(mid)[0, 0], mid)
    expected = g * (bottom(x) - bottom(x0))
    r = LayerConductance(model, "act0").attribute(x, baselines=x0, target=0, steps=1)
    torch.testing.assert_close(r.attributions, expected.detach(), rtol=1e-12, atol=1e-14)


def test_several_layers_in_one_pass_equal_separate_runs():
    model = small_cnn(7)
    x = torch.randn(2, 2, 6, 6, dtype=D)
    layers = ["act2", "conv1", "act1"]  # sequential: each one's gradient flows through the others
    r = LayerConductance(model, layers=layers).attribute(x, target=2, steps=12)
    both = r.info["per_layer"]
    assert list(both) == layers and r.info["layer"] == layers
    assert r.delta.shape == (2, len(layers))
    for i, name in enumerate(layers):
        torch.testing.assert_close(r.attributions[i], both[name].attributions)
        alone = LayerConductance(model, name).attribute(x, target=2, steps=12)
        torch.testing.assert_close(both[name].attributions, alone.attributions,
                                   rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(both[name].delta, alone.delta, rtol=1e-10, atol=1e-12)


def test_layer_input_equals_previous_layer_output():
    model = tanh_mlp(8)
    x = torch.randn(3, 6, dtype=D)
    out = LayerConductance(model, "act0").attribute(x, target=0, steps=8)
    inp = LayerConductance(model, "fc1").attribute(x, target=0, steps=8,
                                                   attribute_to_layer_input=True)
    torch.testing.assert_close(inp.attributions, out.attributions, rtol=1e-12, atol=1e-14)


def test_several_baselines_average():
    from pathattr.baselines import Several

    model = tanh_mlp(9)
    x = torch.randn(2, 6, dtype=D)
    b1, b2 = torch.zeros_like(x), torch.full_like(x, 0.3)
    lc = LayerConductance(model, "act1")
    r = lc.attribute(x, baselines=Several(torch.stack([b1, b2])), target=1, steps=8)
    mean = (lc.attribute(x, baselines=b1, target=1, steps=8).attributions
            + lc.attribute(x, baselines=b2, target=1, steps=8).attributions) / 2
    torch.testing.assert_close(r.attributions, mean, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------- neuron conductance


def test_neuron_conductance_equals_dhamdhere_reference_per_feature():
    model = small_cnn(10)
    torch.manual_seed(11)
    x, x0 = torch.randn(1, 2, 6, 6, dtype=D), 0.1 * torch.randn(1, 2, 6, 6, dtype=D)
    neurons = [(0, 0, 0), (3, 2, 5), (1, 5, 5)]
    ref = dhamdhere_reference(model, "act1", x, x0, target=1, nodes=16)  # (B, 4, 6, 6, 2, 6, 6)
    expected = torch.stack([ref[(slice(None), *n)] for n in neurons])
    r = NeuronConductance(model, "act1").attribute(x, neurons, baselines=x0, target=1, steps=24)
    assert r.attributions.shape == (3, 1, 2, 6, 6)
    assert_close_rel(r.attributions, expected, 1e-6)
    assert r.info["neurons"] == neurons


@pytest.mark.parametrize("rule", ["gausslegendre", "riemann_trapezoid", "riemann_left",
                                  "riemann_right", "riemann_middle"])
def test_neuron_conductance_equals_captum(rule):
    from captum.attr import NeuronConductance as CaptumNC

    model = small_cnn(12)
    x = torch.randn(3, 2, 6, 6, dtype=D)
    x0 = torch.full_like(x, -0.2)
    neurons = [(4, 1, 1), (0, 3, 2), (2, 0, 3)]
    r = NeuronConductance(model, "conv2").attribute(x, neurons, baselines=x0, target=2,
                                                    steps=10, rule=rule)
    captum = torch.stack([CaptumNC(model, model.conv2).attribute(
        x, n, baselines=x0, target=2, n_steps=10, method=rule) for n in neurons])
    if rule == "riemann_trapezoid":
        # Captum's trapezoid weights are 1/n inside and 1/(2n) at the ends: they sum to
        # (n - 1)/n instead of 1, a uniform factor on the same nodes.
        captum = captum * 10 / 9
    assert_close_rel(r.attributions, captum, 1e-6)


def test_neuron_conductance_sums_to_layer_conductance_up_to_quadrature_error():
    # Both discretise int dF/dy dy/da da (derivative vs cell difference): the gap is quadrature
    # error, so it must shrink about fourfold per doubling of steps on a smooth net.
    model = tanh_mlp(13)
    x = torch.randn(2, 6, dtype=D)
    neurons = list(range(9))
    gaps = []
    for steps in (8, 16, 32):
        nc = NeuronConductance(model, "act0").attribute(x, neurons, target=3, steps=steps)
        lc = LayerConductance(model, "act0").attribute(x, target=3, steps=steps)
        total = nc.attributions.sum(-1).T  # (B, neurons)
        torch.testing.assert_close(total, nc.info["total_conductance"].T)
        gaps.append(((total - lc.attributions).abs().max() / lc.attributions.abs().max()).item())
    assert gaps[0] > 2.5 * gaps[1] > 6 * gaps[2]
    assert gaps[2] < 1e-3


def test_neuron_formats_flat_multi_and_tensor_agree():
    model = small_cnn(14)
    x = torch.randn(1, 2, 6, 6, dtype=D)
    nc = NeuronConductance(model, "act1")
    multi = nc.attribute(x, [(1, 2, 3), (3, 0, 5)], target=0, steps=4).attributions
    flat = nc.attribute(x, [1 * 36 + 2 * 6 + 3, 3 * 36 + 5], target=0, steps=4).attributions
    tens = nc.attribute(x, torch.tensor([[1, 2, 3], [3, 0, 5]]), target=0, steps=4).attributions
    one = nc.attribute(x, (1, 2, 3), target=0, steps=4).attributions
    torch.testing.assert_close(flat, multi, rtol=0, atol=0)
    torch.testing.assert_close(tens, multi, rtol=0, atol=0)
    torch.testing.assert_close(one, multi[:1], rtol=0, atol=0)


def test_neuron_conductance_does_not_depend_on_the_chunk_size():
    model = small_cnn(15)
    x = torch.randn(2, 2, 6, 6, dtype=D)
    neurons = [(c, 1, 1) for c in range(4)]
    whole = NeuronConductance(model, "act1").attribute(x, neurons, target=0, steps=6).attributions
    small = NeuronConductance(model, "act1").attribute(x, neurons, target=0, steps=6,
                                                       batch_size=5).attributions
    torch.testing.assert_close(small, whole, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------- errors and model state


class TwiceUsed(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.act, self.out = nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 1)
        self.unused = nn.Linear(3, 3)

    def forward(self, x):
        return self.out(self.act(self.act(self.fc(x))))


def test_errors_are_clear():
    model = tanh_mlp(16)
    x = torch.randn(2, 6, dtype=D)
    with pytest.raises(ValueError, match="close names: act0"):
        LayerConductance(model, "act_0")
    with pytest.raises(TypeError, match="exactly one"):
        LayerConductance(model)
    with pytest.raises(ValueError, match="twice"):
        LayerConductance(model, layers=["act0", "act0"])
    nc = NeuronConductance(model, "act0")  # 9 units
    with pytest.raises(IndexError, match="out of range"):
        nc.attribute(x, [9], target=0, steps=2)
    with pytest.raises(IndexError, match="out of range"):
        nc.attribute(x, [-1], target=0, steps=2)
    with pytest.raises(ValueError, match="has 2 indices"):
        nc.attribute(x, [(1, 2)], target=0, steps=2)
    for bad in ([1.5], "3", [], [True], torch.tensor([0.5])):
        with pytest.raises(TypeError):
            nc.attribute(x, bad, target=0, steps=2)
    twice = TwiceUsed().to(D).eval()
    xt = torch.randn(2, 3, dtype=D)
    with pytest.raises(RuntimeError, match="executed 2 times"):
        LayerConductance(twice, "act").attribute(xt, steps=2)
    with pytest.raises(RuntimeError, match="executed 2 times"):
        NeuronConductance(twice, "act").attribute(xt, [0], steps=2)
    with pytest.raises(LayerNotExecuted):
        LayerConductance(twice, "unused").attribute(xt, steps=2)


def _state(model: nn.Module):
    hooks = sum(len(getattr(m, k)) for m in model.modules()
                for k in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks"))
    return hooks, [p.requires_grad for p in model.parameters()], [m.training for m in
                                                                  model.modules()]


def test_model_state_is_restored_also_on_error():
    model = small_cnn(17)
    model[0].weight.requires_grad_(False)  # a mixed state must come back as it was
    before = _state(model)
    x = torch.randn(1, 2, 6, 6, dtype=D)
    LayerConductance(model, layers=["act1", "conv2"]).attribute(x, target=0, steps=3)
    assert _state(model) == before
    NeuronConductance(model, "act1").attribute(x, [0, 1], target=0, steps=3)
    assert _state(model) == before
    with pytest.raises(IndexError):
        NeuronConductance(model, "act1").attribute(x, [10_000], target=0, steps=3)
    assert _state(model) == before
    with pytest.raises(ValueError):
        LayerConductance(model, "act1").attribute(x, target=99, steps=3)
    assert _state(model) == before


# ---------------------------------------------------------------- real models


@contextmanager
def forward_hook(module: nn.Module, hook):
    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


@pytest.fixture(scope="module")
def lite0_and_cat():
    from pathattr.zoo import efficientnet_lite0, photo_batch

    return efficientnet_lite0(), photo_batch(["chelsea"])


@pytest.mark.slow
def test_efficientnet_block_conductance(lite0_and_cat):
    # With one Gauss-Legendre node the conductance of a block is exactly
    # dF/dy(1/2) * (y(x) - y(x')), computed here by hand through the real network, whose
    # blocks call their ReLU6 module twice.
    model, x = lite0_and_cat
    before = _state(model)
    r = LayerConductance(model, layers=["_blocks.8", "_blocks.4"]).attribute(
        x, target=285, steps=1)
    assert _state(model) == before
    for name, res in r.info["per_layer"].items():
        block = model.get_submodule(name)
        seen: list[Tensor] = []

        def keep(_m, _i, out, seen=seen):
            seen.append(out)

        def cut(_m, _i, out, seen=seen):
            seen.append(out.detach().requires_grad_(True))
            return seen[-1]

        with torch.no_grad(), forward_hook(block, keep):
            model(torch.cat([x, torch.zeros_like(x)]))
        y1, y0 = seen[0][:1], seen[0][1:]
        with forward_hook(block, cut):
            out = model(0.5 * x)[0, 285]
        (g,) = torch.autograd.grad(out, seen[-1])
        torch.testing.assert_close(res.attributions, g * (y1 - y0), rtol=1e-4, atol=1e-6)
    assert r.info["per_layer"]["_blocks.8"].attributions.shape == (1, 112, 14, 14)
    assert r.info["per_layer"]["_blocks.8"].neuron_totals().shape == (1, 112)
    with pytest.raises(RuntimeError, match="executed 2 times"):
        LayerConductance(model, "_blocks.8._swish").attribute(x, target=285, steps=2)
    assert _state(model) == before


@pytest.mark.slow
def test_efficientnet_neuron_conductance_matches_captum():
    from captum.attr import NeuronConductance as CaptumNC

    from pathattr.zoo import efficientnet_lite0, photo_batch

    model = efficientnet_lite0().double()
    x = photo_batch(["coffee"]).double()
    neurons = [(40, 7, 1)]
    r = NeuronConductance(model, "_blocks.8").attribute(x, neurons, target=285, steps=2)
    captum = CaptumNC(model, model._blocks[8]).attribute(
        x, neurons[0], target=285, n_steps=2, method="gausslegendre")[None]
    assert_close_rel(r.attributions, captum, 1e-6)


class EmbeddingsToSimilarity(nn.Module):
    """MiniLM on word embeddings (a float input, so the straight path lives in embedding space)
    -> cosine similarity with a fixed sentence."""

    def __init__(self, sim: nn.Module, mask: Tensor):
        super().__init__()
        self.bert, self.other = sim.encoder.bert, sim.other
        self.register_buffer("mask", mask)

    def forward(self, embeds: Tensor) -> Tensor:
        mask = self.mask.expand(embeds.shape[0], -1)
        h = self.bert(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).to(h.dtype)
        mean = nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1)
        return (mean * self.other).sum(-1)


@pytest.mark.slow
def test_minilm_embeddings_and_hidden_states():
    from pathattr.zoo import minilm, similarity_model

    tok, enc = minilm()
    sim = similarity_model(tok, enc, "A cat sleeps on the sofa.")
    ids = tok(["The kitten naps on a couch."], return_tensors="pt")
    model = EmbeddingsToSimilarity(sim, ids["attention_mask"]).eval()
    with torch.no_grad():
        emb = sim.encoder.bert.embeddings.word_embeddings(ids["input_ids"])
    layers = ["bert.embeddings", "bert.encoder.layer.1.output"]
    r = LayerConductance(model, layers=layers).attribute(emb, steps=16).info["per_layer"]
    n_tokens = ids["input_ids"].shape[1]
    for name in layers:
        assert r[name].attributions.shape == (1, n_tokens, 384)
        assert r[name].relative_delta().item() < 1e-2, name
    nc = NeuronConductance(model, layers[1]).attribute(emb, [(1, 5), (2, 100)], steps=16)
    assert nc.attributions.shape == (2, 1, n_tokens, 384)
    total = nc.info["total_conductance"][:, 0]
    lc = r[layers[1]].attributions[0]
    torch.testing.assert_close(total, torch.stack([lc[1, 5], lc[2, 100]]), rtol=0.05,
                               atol=1e-3 * lc.abs().max().item())


def test_neuron_selector_functions_equal_captums_and_the_index_form():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 6), nn.Softplus(),
                      nn.Linear(6, 3)).double().eval()
    x = torch.randn(3, 4, dtype=torch.double)

    def slice_sum(t):
        return t[:, 1:4].sum(1)

    def third(t):
        return t[:, 2]

    nc = NeuronConductance(m, "2")
    r = nc.attribute(x, [slice_sum, third], target=1, steps=50)
    assert r.info["neurons"] == ["slice_sum", "third"]
    for j, sel in enumerate((slice_sum, third)):
        from captum.attr import NeuronConductance as CaptumNeuronConductance

        want = CaptumNeuronConductance(m, m[2]).attribute(x, sel, target=1, n_steps=50,
                                                       method="gausslegendre")
        torch.testing.assert_close(r.attributions[j], want, rtol=0, atol=1e-6)
    by_index = nc.attribute(x, 2, target=1, steps=50)
    torch.testing.assert_close(r.attributions[1], by_index.attributions[0], rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="one value per example"):
        nc.attribute(x, lambda t: t[:, :2], target=1, steps=4)


def test_layer_of_several_tensors_is_one_cut_with_a_joint_gap():
    from captum.testing.helpers.basic_models import BasicModel_MultiLayer

    model = BasicModel_MultiLayer(multi_input_module=True).double().eval()
    torch.manual_seed(0)
    for p in model.parameters():  # off Captum's integer weights: no kink on a path node
        p.data.add_(0.1 * torch.randn_like(p))
    x = torch.tensor([[-10.0, 1.0, -5.0], [1.9, 2.0, 1.9]], dtype=torch.double)
    base = torch.tensor([[1.0, -2.0, 3.0], [0.0, 0.5, -0.3]], dtype=torch.double)
    for to_input in (False, True):
        r = LayerConductance(model, "multi_relu").attribute(
            x, base, target=1, steps=40, attribute_to_layer_input=to_input)
        assert isinstance(r.attributions, tuple) and len(r.attributions) == 2
        for i, ours in enumerate(r.attributions):  # each tensor alone, as its own layer
            alone = LayerConductance(model, f"multi_relu[{i}]").attribute(
                x, base, target=1, steps=40, attribute_to_layer_input=to_input)
            torch.testing.assert_close(ours, alone.attributions, rtol=0, atol=0)
        with torch.no_grad():
            change = model(x)[:, 1] - model(base)[:, 1]
        total = sum(a.sum(1) for a in r.attributions)
        torch.testing.assert_close(r.delta, total - change, rtol=0, atol=1e-12)
        # the two tensors together separate input from output: a small gap, not either alone
        assert (r.delta.abs() < 0.05 * change.abs()).all()
        assert (alone.delta.abs() > 0.05 * change.abs()).any()
        if not to_input:
            output_delta = r.delta
    both = LayerConductance(model, layers=["multi_relu", "linear2"]).attribute(
        x, base, target=1, steps=40)
    assert both.delta.shape == (2, 2) and isinstance(both.attributions[0], tuple)
    torch.testing.assert_close(both.delta[:, 0], output_delta, rtol=0, atol=0)


def test_neuron_selector_reads_a_layer_of_several_tensors_as_captum_does():
    """A selector of the tuple equals the same neuron named by its element."""
    model, x = TupleLayer().double().eval(), torch.randn(3, 3, dtype=torch.float64)
    by_tuple = NeuronConductance(model, "pair").attribute(x, lambda t: t[1][:, 2], target=1)
    by_element = NeuronConductance(model, "pair[1]").attribute(x, 2, target=1)
    torch.testing.assert_close(by_tuple.attributions, by_element.attributions, rtol=0,
                               atol=1e-12)
