"""Models as people call them: tuple inputs, forward arguments, HuggingFace models with
attention masks and ModelOutputs, token ids, (position, class) targets, tuple-output layers.

Every architecture is built from a small config with random weights (nothing downloaded) and
run in float64, so completeness is checked against the model itself to tight tolerances.
"""

import pytest
import torch
from captum import attr as ca
from nets import Recurrent
from torch import nn

import pathattr

transformers = pytest.importorskip("transformers")
D = torch.float64


def _rel(r):
    return (r.delta.abs() / r.info["output_delta"].abs().clamp_min(1e-12)).max().item()


class TwoInputs(nn.Module):
    """An image branch and a tabular branch, plus a per-example scale passed as an extra arg."""

    def __init__(self):
        super().__init__()
        self.conv, self.act = nn.Conv2d(2, 3, 3, padding=1), nn.Tanh()
        self.tab, self.gate = nn.Linear(5, 4), nn.Sigmoid()
        self.head = nn.Linear(3 * 16 + 4, 3)

    def forward(self, img, tab, scale):
        h = self.act(self.conv(img)).flatten(1)
        return self.head(torch.cat([h, self.gate(self.tab(tab))], 1)) * scale[:, None]


@pytest.fixture(scope="module")
def two():
    torch.manual_seed(0)
    model = TwoInputs().to(D).eval()
    x = (torch.randn(3, 2, 4, 4, dtype=D), torch.randn(3, 5, dtype=D))
    scale = torch.tensor([1.0, 2.0, -0.5], dtype=D)
    return model, x, scale


def test_tuple_inputs_equal_captum(two):
    model, x, scale = two
    kw = {"additional_forward_args": (scale,)}
    target = [0, 2, 1]
    ours = pathattr.IntegratedGradients(model).attribute(x, target=target, steps=32, **kw)
    theirs = ca.IntegratedGradients(model).attribute(x, target=target, n_steps=32,
                                                     additional_forward_args=(scale,))
    assert isinstance(ours.attributions, tuple) and len(ours.attributions) == 2
    for a, b in zip(ours.attributions, theirs):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)
    assert _rel(ours) < 1e-3
    for ours_cls, theirs_cls in [(pathattr.Saliency, ca.Saliency),
                                 (pathattr.InputXGradient, ca.InputXGradient)]:
        a = ours_cls(model).attribute(x, target=target, **kw).attributions
        b = theirs_cls(model).attribute(x, target=target, additional_forward_args=(scale,))
        for p, q in zip(a, b):
            torch.testing.assert_close(p, q, rtol=1e-7, atol=1e-9)
    dl = pathattr.DeepLift(model).attribute(x, target=target, **kw)
    dl_c = ca.DeepLift(model).attribute(x, target=target, additional_forward_args=(scale,))
    for p, q in zip(dl.attributions, dl_c):
        torch.testing.assert_close(p, q, rtol=1e-8, atol=1e-10)
    assert dl.delta.abs().max() < 1e-10


def test_tuple_inputs_layer_methods_equal_captum(two):
    model, x, scale = two
    kw = {"additional_forward_args": (scale,)}
    # "tab" sees only the tabular input: the image stays at x along the layer's path, so the
    # path starts at F(x') only where the image's baseline is the image itself
    with pytest.raises(pathattr.errors.PathError, match="does not start at the baseline"):
        pathattr.LayerIntegratedGradients(model, "tab").attribute(x, target=1, **kw)
    base = (x[0], torch.zeros_like(x[1]))
    lig = pathattr.LayerIntegratedGradients(model, "tab").attribute(x, base, target=1, steps=20,
                                                                    **kw)
    lig_c = ca.LayerIntegratedGradients(model, model.tab).attribute(
        x, base, target=1, n_steps=20, additional_forward_args=(scale,))
    torch.testing.assert_close(lig.attributions, lig_c, rtol=1e-7, atol=1e-9)
    assert _rel(lig) < 1e-2
    nc = pathattr.NeuronConductance(model, "head").attribute(x, [2], target=1, steps=20, **kw)
    nc_c = ca.NeuronConductance(model, model.head).attribute(
        x, 2, target=1, n_steps=20, additional_forward_args=(scale,))
    for p, q in zip(nc.attributions, nc_c):
        torch.testing.assert_close(p[0], q, rtol=1e-7, atol=1e-9)
    lc = pathattr.LayerConductance(model, "head").attribute(x, target=1, steps=64, **kw)
    assert _rel(lc) < 1e-3  # the head separates both inputs from the output


def test_multiply_by_inputs_false_equals_captum(two):
    model, x, scale = two
    kw = {"additional_forward_args": (scale,)}
    ours = pathattr.IntegratedGradients(model, multiply_by_inputs=False).attribute(
        x, target=0, steps=16, **kw)
    theirs = ca.IntegratedGradients(model, multiply_by_inputs=False).attribute(
        x, target=0, n_steps=16, additional_forward_args=(scale,))
    for p, q in zip(ours.attributions, theirs):
        torch.testing.assert_close(p, q, rtol=1e-7, atol=1e-9)
    assert _rel(ours) < 1e-3  # delta stays the completeness gap of the multiplied form
    dl = pathattr.DeepLift(model, multiply_by_inputs=False).attribute(x, target=0, **kw)
    dl_c = ca.DeepLift(model, multiply_by_inputs=False).attribute(
        x, target=0, additional_forward_args=(scale,))
    for p, q in zip(dl.attributions, dl_c):
        torch.testing.assert_close(p, q, rtol=1e-8, atol=1e-10)


def test_per_input_baselines_and_examples_independent(two):
    model, x, scale = two
    kw = {"additional_forward_args": (scale,)}
    base = (0.1, torch.ones(5, dtype=D))
    r = pathattr.IntegratedGradients(model).attribute(x, base, target=[0, 2, 1], steps=16, **kw)
    one = pathattr.IntegratedGradients(model).attribute(
        (x[0][2:], x[1][2:]), base, target=1, steps=16,
        additional_forward_args=(scale[2:],))
    for a, b in zip(r.attributions, one.attributions):
        torch.testing.assert_close(a[2:], b, rtol=1e-12, atol=1e-14)


@pytest.fixture(scope="module")
def bert():
    cfg = transformers.BertConfig(vocab_size=60, hidden_size=16, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=24, num_labels=3,
                                  max_position_embeddings=16)
    torch.manual_seed(1)
    model = transformers.BertForSequenceClassification(cfg).to(D).eval()
    ids = torch.randint(5, 60, (2, 7))
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[1, 4:] = 0
    return model, ids, mask


def test_bert_with_attention_mask(bert):
    model, ids, mask = bert
    kw = {"forward_kwargs": {"attention_mask": mask}}
    emb = "bert.embeddings.word_embeddings"
    r = pathattr.LayerIntegratedGradients(model, emb).attribute(ids, 0, target=1, steps=32, **kw)
    assert r.attributions.shape == (2, 7, 16) and r.delta.abs().max() < 1e-10
    # each example is explained with its own mask: equal to explaining it alone
    alone = pathattr.LayerIntegratedGradients(model, emb).attribute(
        ids[1:], 0, target=1, steps=32, forward_kwargs={"attention_mask": mask[1:]})
    torch.testing.assert_close(r.attributions[1:], alone.attributions, rtol=1e-12, atol=1e-14)
    theirs = ca.LayerIntegratedGradients(lambda i, m: model(i, attention_mask=m).logits,
                                         model.bert.embeddings.word_embeddings).attribute(
        ids, baselines=torch.zeros_like(ids), target=1, n_steps=32,
        additional_forward_args=(mask,))
    torch.testing.assert_close(r.attributions, theirs, rtol=1e-8, atol=1e-10)
    auto = pathattr.LayerIntegratedGradients(model, emb).attribute(
        ids, 0, target=1, steps="auto", tol=1e-4, **kw)
    assert auto.info["converged"].all() and _rel(auto) <= 1e-4
    # token ids: conductance along the path in the word-embedding space (found by the model)
    for layer in ["bert.encoder.layer.0.output", "bert.encoder.layer.1"]:
        lc = pathattr.LayerConductance(model, layer).attribute(ids, 0, target=1, steps=64, **kw)
        assert lc.attributions.shape == (2, 7, 16) and _rel(lc) < 1e-3, layer
    nc = pathattr.NeuronConductance(model, "bert.pooler").attribute(
        ids, [3, 7], 0, target=1, steps=64, **kw)
    lc = pathattr.LayerConductance(model, "bert.pooler").attribute(ids, 0, target=1, steps=64,
                                                                   **kw)
    torch.testing.assert_close(nc.info["total_conductance"].T, lc.attributions[:, [3, 7]],
                               rtol=1e-3, atol=1e-6)
    ex = pathattr.explain(model, ids, ["ig", ("conductance", "bert.pooler")], 0, target=1,
                          steps=64, **kw)
    torch.testing.assert_close(ex["ig"].attributions, pathattr.LayerIntegratedGradients(
        model, emb).attribute(ids, 0, target=1, steps=64, **kw).attributions,
        rtol=1e-7, atol=1e-9)
    # DeepLIFT through the masked attention: exact, and the padded positions get nothing
    dl = pathattr.LayerDeepLift(model, emb).attribute(ids, 0, target=1, **kw)
    assert _rel(dl) < 1e-10
    assert dl.attributions[mask == 0].abs().max() < 1e-12


def test_gpt2_position_class_targets():
    cfg = transformers.GPT2Config(vocab_size=40, n_embd=16, n_layer=2, n_head=2, n_positions=12)
    torch.manual_seed(2)
    model = transformers.GPT2LMHeadModel(cfg).to(D).eval()
    ids = torch.randint(0, 40, (2, 6))
    lig = pathattr.LayerIntegratedGradients(model, "transformer.wte")
    r = lig.attribute(ids, 0, target=[(5, 7), (3, 11)], steps=32)
    assert r.delta.abs().max() < 1e-10 * r.info["output_delta"].abs().max() + 1e-12
    # causal: positions after the explained one get nothing
    assert r.attributions[1, 4:].abs().max() == 0
    with torch.no_grad():
        out = model(ids).logits
    torch.testing.assert_close(r.info["output_delta"][0] + model(torch.zeros_like(ids[:1]))
                               .logits[0, 5, 7], out[0, 5, 7])
    with pytest.raises(ValueError, match="out of range"):
        lig.attribute(ids, 0, target=(6, 0), steps=4)
    with pytest.raises(ValueError, match="position, class"):
        lig.attribute(ids, 0, target=3, steps=4)


def test_token_classification_targets():
    cfg = transformers.BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=1,
                                  num_attention_heads=2, intermediate_size=20, num_labels=4)
    torch.manual_seed(3)
    model = transformers.BertForTokenClassification(cfg).to(D).eval()
    ids = torch.randint(1, 30, (2, 5))
    r = pathattr.LayerIntegratedGradients(model, "bert.embeddings").attribute(
        ids, 0, target=[(1, 3), (4, 0)], steps=16)
    assert r.delta.abs().max() < 1e-10
    # a callable target receives the chosen output and each row's example
    seen = []

    def pick(logits, examples):
        seen.append(examples)
        return logits[torch.arange(len(logits)), examples + 1, 2]
    c = pathattr.LayerIntegratedGradients(model, "bert.embeddings").attribute(
        ids, 0, target=pick, steps=16, batch_size=5)
    t = pathattr.LayerIntegratedGradients(model, "bert.embeddings").attribute(
        ids, 0, target=[(1, 2), (2, 2)], steps=16)
    torch.testing.assert_close(c.attributions, t.attributions, rtol=1e-12, atol=1e-14)
    assert any(len(set(e.tolist())) == 2 for e in seen)  # chunks mixed both examples


def test_vit_pixels():
    cfg = transformers.ViTConfig(image_size=8, patch_size=4, hidden_size=16, num_hidden_layers=1,
                                 num_attention_heads=2, intermediate_size=20, num_labels=3)
    torch.manual_seed(4)
    model = transformers.ViTForImageClassification(cfg).to(D).eval()
    x = torch.randn(2, 3, 8, 8, dtype=D)
    r = pathattr.IntegratedGradients(model).attribute(x, target=2, steps=64)
    assert _rel(r) < 1e-3
    lc = pathattr.LayerConductance(model, "vit.layernorm").attribute(x, target=2, steps=64)
    assert _rel(lc) < 1e-3


@pytest.mark.parametrize("cell", [nn.LSTM, nn.GRU])
def test_recurrent_token_ids_and_tuple_layers(cell):
    torch.manual_seed(5)
    model = Recurrent(cell).to(D).eval()
    ids = torch.randint(1, 20, (3, 6))
    r = pathattr.LayerIntegratedGradients(model, "emb").attribute(ids, 0, target=2, steps=32)
    assert _rel(r) < 1e-3
    # the LSTM/GRU returns (output, state): its element 0 separates input from output
    lc = pathattr.LayerConductance(model, "rnn[0]", path_layer="emb").attribute(
        ids, 0, target=2, steps=64)
    assert lc.attributions.shape == (3, 6, 10) and _rel(lc) < 1e-3
    lig = pathattr.LayerIntegratedGradients(model, "rnn[0]").attribute(ids, 0, target=2,
                                                                       steps=8)
    assert lig.delta.abs().max() < 1e-10
    whole = pathattr.LayerIntegratedGradients  # the layer as a whole: its batch-first tensors
    if cell is nn.LSTM:  # (output, (h, c)): the output is its one tensor element
        torch.testing.assert_close(whole(model, "rnn").attribute(ids, 0, target=2, steps=8)
                                   .attributions, lig.attributions, rtol=0, atol=1e-12)
    else:  # (output, h): h is (layers * directions, batch, hidden), not batch first
        with pytest.raises(TypeError, match="'rnn\\[1\\]'.*not batch first.*'rnn\\[0\\]'"):
            whole(model, "rnn").attribute(ids, 0, target=2, steps=4)
    with pytest.raises(TypeError, match="path_layer"):
        pathattr.LayerConductance(model, "rnn[0]").attribute(ids, 0, target=2, steps=4)


@pytest.mark.parametrize("fast", [False, True])
def test_transformer_encoder_padding_mask(fast):
    torch.manual_seed(6)
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
    enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval()

    class Cls(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc, self.fc = enc, nn.Linear(8, 2)

        def forward(self, x, src_key_padding_mask=None):
            return self.fc(self.enc(x, src_key_padding_mask=src_key_padding_mask)[:, 0])
    model = Cls().eval()
    if not fast:
        model = model.to(D)
    dt = torch.float32 if fast else D
    x = torch.randn(2, 5, 8, dtype=dt)
    # not zero: LayerNorm of a zero vector makes the integrand spike at a = 0
    base = torch.randn(2, 5, 8, dtype=dt)
    pad = torch.tensor([[False] * 5, [False] * 3 + [True] * 2])
    with torch.inference_mode():
        model(x, src_key_padding_mask=pad)  # the fast path runs in inference mode
    r = pathattr.IntegratedGradients(model).attribute(
        x, base, target=1, steps=64, forward_kwargs={"src_key_padding_mask": pad})
    theirs = ca.IntegratedGradients(lambda v, p: model(v, src_key_padding_mask=p)).attribute(
        x, base, target=1, n_steps=64, additional_forward_args=(pad,))
    torch.testing.assert_close(r.attributions, theirs, rtol=1e-4 if fast else 1e-7,
                               atol=1e-5 if fast else 1e-9)
    fine = pathattr.IntegratedGradients(model).attribute(
        x, base, target=1, steps=512, forward_kwargs={"src_key_padding_mask": pad})
    assert _rel(fine) < 0.5 * _rel(r) + 1e-3  # the quadrature error shrinks with steps
    assert r.attributions[1, 3:].abs().max() < 1e-6  # padded positions do not matter


def test_scalar_function_of_1d_inputs():
    def f(x):
        return torch.sin(x) * x
    x = torch.linspace(-2, 2, 5, dtype=D)
    r = pathattr.IntegratedGradients(f).attribute(x, steps=64)
    assert r.attributions.shape == (5,)
    torch.testing.assert_close(r.attributions, f(x), rtol=1e-8, atol=1e-10)  # 1 feature each
    s = pathattr.Saliency(f).attribute(x, abs=False)
    torch.testing.assert_close(s.attributions, torch.cos(x) * x + torch.sin(x))


class AsDict(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, ids, mask):
        return {"scores": self.model(ids, attention_mask=mask).logits, "extra": 0}


def test_model_output_mapping_and_output_key(bert):
    model, ids, mask = bert
    emb = "bert.embeddings.word_embeddings"
    a = pathattr.LayerIntegratedGradients(model, emb).attribute(
        ids, 0, target=1, steps=8, forward_kwargs={"attention_mask": mask})
    wrapped = AsDict(model).eval()
    lig = pathattr.LayerIntegratedGradients(wrapped, "model." + emb)
    with pytest.raises(KeyError, match="scores"):  # no logits: the keys are listed
        lig.attribute(ids, 0, target=1, steps=8, additional_forward_args=(mask,))
    b = lig.attribute(ids, 0, target=1, steps=8, additional_forward_args=(mask,),
                      output="scores")
    torch.testing.assert_close(a.attributions, b.attributions, rtol=0, atol=0)


def test_user_tensors_untouched_and_no_graph(two):
    model, x, scale = two
    xr = tuple(t.clone().float().requires_grad_(True) for t in x)  # float32 into a float64 model
    r = pathattr.IntegratedGradients(model).attribute(
        xr, target=0, steps=8, additional_forward_args=(scale,))
    assert all(a.dtype == D and not a.requires_grad and a.grad_fn is None
               for a in r.attributions)
    assert all(t.grad is None and t.dtype == torch.float32 for t in xr)


def test_smoothgrad_kinds(two):
    model, x, scale = two
    kw = {"target": 0, "additional_forward_args": (scale,)}
    sal = pathattr.Saliency(model)
    runs = [pathattr.SmoothGrad(sal, samples=6, stdevs=0.1, kind=k).attribute(x, abs=False, **kw)
            for k in ("smoothgrad", "smoothgrad_sq", "vargrad")]
    for mean, sq, var in zip(*(r.attributions for r in runs)):
        torch.testing.assert_close(var, sq - mean ** 2)
        assert (var >= -1e-12).all()
    theirs = ca.NoiseTunnel(ca.Saliency(model))
    torch.manual_seed(0)
    c = theirs.attribute(x, nt_type="vargrad", nt_samples=200, stdevs=0.1, abs=False,
                         target=0, additional_forward_args=(scale,))
    ours = pathattr.SmoothGrad(sal, samples=200, stdevs=0.1, kind="vargrad").attribute(
        x, abs=False, **kw)
    for p, q in zip(ours.attributions, c):  # two Monte Carlo estimates of one variance
        assert (p - q).abs().mean() < 0.25 * q.abs().mean() + 1e-6


EMPTY_CASES = {
    "ig": lambda m, x: pathattr.IntegratedGradients(m).attribute(x, target=1, steps=4),
    "ig-auto": lambda m, x: pathattr.IntegratedGradients(m).attribute(x, target=1, steps="auto"),
    "layer-ig": lambda m, x: pathattr.LayerIntegratedGradients(m, "1").attribute(x, target=1),
    "conductance": lambda m, x: pathattr.LayerConductance(m, "1").attribute(x, target=1),
    "neuron-conductance": lambda m, x: pathattr.NeuronConductance(m, "1").attribute(
        x, [0], target=1),
    "deeplift": lambda m, x: pathattr.DeepLift(m).attribute(x, target=1),
    "layer-deeplift": lambda m, x: pathattr.LayerDeepLift(m, "1").attribute(x, target=1),
    "idg": lambda m, x: pathattr.IntegratedDecisionGradients(m).attribute(x, target=1),
    "left-ig": lambda m, x: pathattr.LeftIntegratedGradients(m).attribute(x, target=1),
    "guided-ig": lambda m, x: pathattr.GuidedIntegratedGradients(m).attribute(
        x, target=1, steps=4),
    "agi": lambda m, x: pathattr.AdversarialGradientIntegration(m).attribute(
        x, target=1, classes=2, steps=3),
    "saliency": lambda m, x: pathattr.Saliency(m).attribute(x, target=1),
    "input-x-gradient": lambda m, x: pathattr.InputXGradient(m).attribute(x, target=1),
    "smoothgrad": lambda m, x: pathattr.SmoothGrad(pathattr.Saliency(m), samples=2).attribute(
        x, target=1),
}


@pytest.mark.parametrize("name", list(EMPTY_CASES))
def test_empty_batch_gives_empty_result(name):
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).to(D).eval()
    r = EMPTY_CASES[name](model, torch.zeros(0, 4, dtype=D))
    shape = r.attributions.shape
    assert 0 in shape and shape[-1] in (4, 5), shape
    assert r.delta is None or r.delta.shape == (0,)


def test_smoothgrad_in_layer_space_for_token_ids(bert):
    model, ids, mask = bert
    kw = {"target": 1, "forward_kwargs": {"attention_mask": mask}, "steps": 16}
    lig = pathattr.LayerIntegratedGradients(model, "bert.embeddings.word_embeddings")
    r = pathattr.SmoothGrad(lig, samples=3, stdevs=0.05).attribute(ids, 0, **kw)
    assert r.info["noise_space"] == "layer" and r.attributions.shape == (2, 7, 16)
    # each copy is complete against F at its own noisy end: the deltas stay tiny
    assert r.info["deltas"].abs().max() < 1e-8
    # noise of zero is the method itself; some noise changes the result
    zero = pathattr.SmoothGrad(lig, samples=2, stdevs=0.0).attribute(ids, 0, **kw)
    torch.testing.assert_close(zero.attributions, lig.attribute(ids, 0, **kw).attributions)
    assert (r.attributions - zero.attributions).abs().max() > 1e-6
    lc = pathattr.LayerConductance(model, "bert.pooler")
    c = pathattr.SmoothGrad(lc, samples=2, stdevs=0.05).attribute(ids, 0, **kw)
    assert c.info["deltas"].abs().max() < 1e-2
    with pytest.raises(TypeError, match="integer ids"):
        pathattr.SmoothGrad(pathattr.LayerDeepLift(model, "bert.embeddings")).attribute(
            ids, 0, target=1)
    with pytest.raises(ValueError, match="layer_noise"):
        pathattr.LayerConductance(model, "bert.pooler").attribute(
            torch.randn(2, 3, dtype=D), layer_noise=lambda e: e)


def test_deeplift_several_baselines_report_each_delta(two):
    model, x, scale = two
    tab = pathattr.baselines.Several(torch.randn(4, 5, dtype=D) * 0.3)
    img = pathattr.baselines.Several(torch.randn(4, 2, 4, 4, dtype=D) * 0.3)
    r = pathattr.DeepLift(model).attribute(x, (img, tab), target=1,
                                           additional_forward_args=(scale,))
    each = r.info["deltas"]
    assert each.shape == (3, 4) and each.abs().max() < 1e-10
    torch.testing.assert_close(r.delta, each.mean(1), rtol=0, atol=1e-12)


def test_layer_conductance_converges_to_captums(two):
    # Captum's LayerConductance discretises the same integral with another rule (and an
    # endpoint error of its own): at many steps both agree
    model, x, scale = two
    ours = pathattr.LayerConductance(model, "act").attribute(
        x, target=2, steps=128, additional_forward_args=(scale,))
    theirs = ca.LayerConductance(model, model.act).attribute(
        x, target=2, n_steps=512, additional_forward_args=(scale,))
    scale_ = ours.attributions.abs().max()
    torch.testing.assert_close(ours.attributions, theirs, rtol=0, atol=1e-2 * scale_)


def test_layer_ig_baseline_objects_and_several_layers(two):
    model, x, scale = two
    kw = {"target": 0, "additional_forward_args": (scale,), "steps": 32}
    img = pathattr.baselines.Several(torch.randn(3, 2, 4, 4, dtype=D) * 0.2)
    tab = pathattr.baselines.Several(torch.randn(3, 5, dtype=D) * 0.2)
    r = pathattr.LayerIntegratedGradients(model, "head").attribute(x, (img, tab), **kw)
    assert r.delta.abs().max() < 1e-10  # the head is linear: exact at any step count
    # the two branches' activations move together; completeness holds for their sum
    both = pathattr.LayerIntegratedGradients(model, ["act", "gate"]).attribute(x, **kw)
    assert isinstance(both.attributions, tuple) and len(both.attributions) == 2
    assert both.delta.abs().max() < 1e-3 * both.info["output_delta"].abs().max()
