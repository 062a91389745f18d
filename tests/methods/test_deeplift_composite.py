"""DeepLIFT through softmax, normalisation, attention and recurrence: each decomposition equals
its fused kernel, each composite rule equals hand-computed multipliers, and summation-to-delta
holds on real architectures (float32 <= 1e-5, float64 <= 1e-10 relative, both rules)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import transformers
from torch import nn

import pathattr
from pathattr.methods.deeplift import composite as dc

D = torch.float64
RULES = ["rescale", "revealcancel"]


# -- decompositions equal the fused kernels ---------------------------------------------------

@pytest.mark.parametrize("mask", ["none", "causal", "bool", "additive", "gqa", "dead-row"])
def test_sdpa_decomposition_equals_the_kernel(mask):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 5, 8, dtype=D) for _ in range(3))
    kw = {}
    if mask == "causal":
        kw["is_causal"] = True
    elif mask == "bool":
        kw["attn_mask"] = torch.rand(2, 1, 5, 5) > 0.3
        kw["attn_mask"][..., 0] = True  # no row fully masked
    elif mask == "additive":
        kw["attn_mask"] = torch.randn(2, 1, 5, 5, dtype=D)
    elif mask == "dead-row":  # a query that may attend nowhere: the kernel gives 0
        kw["attn_mask"] = torch.ones(2, 1, 5, 5, dtype=torch.bool)
        kw["attn_mask"][:, :, 1] = False
        kw["is_causal"] = False
    elif mask == "gqa":
        k, v, kw["enable_gqa"] = k[:, :2], v[:, :2], True
    torch.testing.assert_close(dc.scaled_dot_product_attention(q, k, v, **kw),
                               F.scaled_dot_product_attention(q, k, v, **kw), rtol=0, atol=1e-12)


@pytest.mark.parametrize("batch_first", [True, False])
def test_multi_head_attention_decomposition_equals_the_module(batch_first):
    torch.manual_seed(0)
    m = nn.MultiheadAttention(8, 2, batch_first=batch_first).to(D).eval()
    x = torch.randn(3, 5, 8, dtype=D)
    x_in = x if batch_first else x.transpose(0, 1)
    pad = torch.zeros(3, 5, dtype=torch.bool)
    pad[0, 3:] = True
    causal = torch.triu(torch.ones(5, 5, dtype=torch.bool), 1)
    with torch.no_grad():
        want, want_w = m(x_in, x_in, x_in, key_padding_mask=pad, attn_mask=causal)
    seq = x_in if not batch_first else x_in.transpose(0, 1)
    got, got_w = dc.multi_head_attention_forward(
        seq, seq, seq, 8, 2, m.in_proj_weight, m.in_proj_bias, None, None, False, 0.0,
        m.out_proj.weight, m.out_proj.bias, training=False, key_padding_mask=pad,
        attn_mask=causal)
    got = got if not batch_first else got.transpose(0, 1)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    torch.testing.assert_close(got_w, want_w, rtol=0, atol=1e-12)


@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU])
@pytest.mark.parametrize("batch_first", [True, False])
def test_recurrent_decomposition_equals_the_module(cls, batch_first):
    torch.manual_seed(0)
    m = cls(4, 6, num_layers=2, bidirectional=True, batch_first=batch_first).to(D).eval()
    x = torch.randn(3, 5, 4, dtype=D) if batch_first else torch.randn(5, 3, 4, dtype=D)
    h0 = torch.randn(4, 3, 6, dtype=D)
    hx = (h0, torch.randn(4, 3, 6, dtype=D)) if cls is nn.LSTM else h0
    with torch.no_grad():
        want = m(x, hx)
    fn = dc.lstm if cls is nn.LSTM else dc.gru
    got = fn(x, hx, m._flat_weights, True, 2, 0.0, False, True, batch_first)
    want = (want[0], *want[1]) if cls is nn.LSTM else want
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=0, atol=1e-12)


# -- composite rules against multipliers written from their equations -------------------------

def _softmax_first_by_hand(z: tuple, zr: tuple) -> list[float]:
    """Contributions of z_j to y_0 = softmax(z)_0 from the rule's equations: the reference
    moves by the common shift t (the smallest change when all changes share a sign, else 0),
    then w = z - L with L = logsumexp and y = exp(w), each step by Rescale."""
    dz = [a - b for a, b in zip(z, zr)]
    t = min(dz) if min(dz) > 0 else max(dz) if max(dz) < 0 else 0.0
    zs = [v + t for v in zr]
    d = [a - b for a, b in zip(z, zs)]
    c = max(max(z), max(zs))
    e, er = [math.exp(v - c) for v in z], [math.exp(v - c) for v in zs]
    s, sr = sum(e), sum(er)
    dlse = math.log(s) - math.log(sr)
    share = [(e[j] - er[j]) / (s - sr) for j in range(len(z))]  # C_j(L) = dL * de_j / ds
    w0, w0r = z[0] - (c + math.log(s)), zs[0] - (c + math.log(sr))
    m_exp = (math.exp(w0) - math.exp(w0r)) / (w0 - w0r)
    return [m_exp * ((d[0] if j == 0 else 0.0) - dlse * share[j]) for j in range(len(z))]


@pytest.mark.parametrize("z, zr", [((1.0, 2.0), (0.0, 0.0)),     # a common shift t = 1
                                   ((1.0, -1.0), (0.0, 0.5)),    # changes of both signs: t = 0
                                   ((-3.0, -1.0, -2.5), (0.0, 0.5, 0.0))])  # t = -1.5
def test_softmax_contributions_hand_computed(z, zr):
    want = _softmax_first_by_hand(z, zr)

    class First(nn.Module):
        def forward(self, x):
            return torch.softmax(x, -1)[:, :1]

    r = pathattr.DeepLift(First()).attribute(torch.tensor([z], dtype=D),
                                             torch.tensor([zr], dtype=D), target=0)
    torch.testing.assert_close(r.attributions[0], torch.tensor(want, dtype=D), rtol=1e-12,
                               atol=1e-14)
    exact = [math.exp(v) / sum(math.exp(u) for u in x) for x in (z, zr) for v in x[:1]]
    assert abs(sum(want) - (exact[0] - exact[1])) < 1e-14


def test_softmax_rule_ignores_a_common_shift_of_the_logits():
    # Where every logit moves the same way, the common part of the move changes neither y nor
    # any contribution: only the moves relative to the least-moved logit count.
    d, zr = torch.tensor([[0.3, -1.2, 2.0]], dtype=D), torch.tensor([[0.0, 0.4, -0.1]], dtype=D)
    first = nn.Sequential(nn.Softmax(-1))
    a, b = (pathattr.DeepLift(first).attribute(zr + d + c, zr, target=0) for c in (2.0, 50.0))
    torch.testing.assert_close(a.attributions, b.attributions, rtol=0, atol=1e-12)
    assert a.attributions[0, 1] == 0  # the least-moved logit


def test_softmax_rule_float32_on_captums_all_ones_model():
    # Captum's SoftmaxDeepLiftModel: logits ~1e6 that move together. The old rule's per-logit
    # terms of ~1e5 cancelled to float32 rounding times the offset (gaps of 1e-2); Captum's
    # elementwise rule stays under 3e-3. The gap is now the float32 forward's own rounding.
    from captum.testing.helpers.classification_models import SoftmaxDeepLiftModel

    torch.manual_seed(1235)
    model = SoftmaxDeepLiftModel(40, 20, 10).eval()
    x = torch.arange(0.0, 120.0).reshape(3, 40)
    for target in (1, 2):
        r = pathattr.DeepLift(model).attribute(x, torch.zeros_like(x), target=target)
        with torch.no_grad():
            gap = r.attributions.sum(1) - (model(x) - model(torch.zeros_like(x)))[:, target]
        assert gap.abs().max() < 1e-6
        torch.testing.assert_close(r.delta, gap, rtol=0, atol=1e-6)


def test_layer_norm_contributions_hand_computed():
    # Two features, no affine: u = z - mean z = (d, -d), d = (z0 - z1)/2; v = mean(u u) = d^2
    # (Shapley: dv = u0_mid du0 + u1_mid du1); r = (v + eps)^-1/2 by Rescale; y_0 = u_0 r split
    # at the end where r is smaller, here the input (r < r'): dy_0 = du_0 r + u_0' dr. So
    #   M_0 = r/2 + u0' u0_mid m_r,   M_1 = -M_0,   with m_r = (r - r') / (v - v').
    eps = 1e-5
    z, zr = (2.0, -1.0), (0.5, 0.0)
    d, dr = (z[0] - z[1]) / 2, (zr[0] - zr[1]) / 2
    r, rr = (d * d + eps) ** -0.5, (dr * dr + eps) ** -0.5
    m_r = (r - rr) / (d * d - dr * dr)
    u0_mid = (d + dr) / 2
    assert r < rr
    m0 = r / 2 + dr * u0_mid * m_r
    want = [m0 * (z[0] - zr[0]), -m0 * (z[1] - zr[1])]

    class First(nn.Module):
        def forward(self, x):
            return F.layer_norm(x, (2,), eps=eps)[:, :1]

    r_dl = pathattr.DeepLift(First()).attribute(torch.tensor([z], dtype=D),
                                                torch.tensor([zr], dtype=D), target=0)
    torch.testing.assert_close(r_dl.attributions[0], torch.tensor(want, dtype=D), rtol=1e-12,
                               atol=1e-14)
    assert abs(r_dl.delta.item()) < 1e-14


def test_softmax_delta_against_captums():
    from captum.attr import DeepLift as CaptumDeepLift

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 4), nn.Softmax(dim=1)).to(D)
    model.eval()
    x, base = torch.randn(3, 6, dtype=D), torch.zeros(3, 6, dtype=D)
    ours = pathattr.DeepLift(model).attribute(x, base, target=2)
    _, theirs = CaptumDeepLift(model).attribute(x, base, target=2, return_convergence_delta=True)
    out_delta = ours.info["output_delta"].abs()
    assert (ours.delta.abs() / out_delta).max() < 1e-12
    # Captum's elementwise softmax rule leaves a gap of the order of the output change itself.
    assert (theirs.abs() / out_delta).max() > 1e-3, theirs


# -- summation-to-delta on real architectures --------------------------------------------------

class Encoder(nn.Module):
    def __init__(self, batch_first: bool):
        super().__init__()
        layer = nn.TransformerEncoderLayer(16, 2, 32, batch_first=batch_first)
        self.enc, self.fc, self.bf = nn.TransformerEncoder(layer, 2), nn.Linear(16, 3), \
            batch_first

    def forward(self, x, pad):
        h = self.enc(x if self.bf else x.transpose(0, 1), src_key_padding_mask=pad)
        return self.fc((h if self.bf else h.transpose(0, 1))[:, 0])


class Recurrent(nn.Module):
    def __init__(self, cls, batch_first: bool):
        super().__init__()
        self.rnn = cls(4, 6, num_layers=2, bidirectional=True, batch_first=batch_first)
        self.fc, self.bf = nn.Linear(12, 3), batch_first

    def forward(self, x):
        out = self.rnn(x if self.bf else x.transpose(0, 1))[0]
        return self.fc((out if self.bf else out.transpose(0, 1))[:, -1])


class SwiGLU(nn.Module):
    """A Llama-style block: RMSNorm, then SiLU(x W1) * (x W3) W2, residual."""

    def __init__(self):
        super().__init__()
        self.norm = nn.RMSNorm(8, eps=1e-6)
        self.w1, self.w3 = nn.Linear(8, 16, bias=False), nn.Linear(8, 16, bias=False)
        self.w2, self.fc = nn.Linear(16, 8, bias=False), nn.Linear(8, 3)

    def forward(self, x):
        h = self.norm(x)
        return self.fc((x + self.w2(F.silu(self.w1(h)) * self.w3(h))).mean(1))


def _bert():
    cfg = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=32,
                                  max_position_embeddings=16, num_labels=3)
    return transformers.BertForSequenceClassification(cfg)


def case(name: str, dtype):
    """``(method, x, baselines, target, kwargs)`` with the target each example moves most."""
    torch.manual_seed(0)
    if name == "bert-mask":
        m = _bert().to(dtype).eval()
        ids = torch.randint(5, 50, (3, 7))
        mask = torch.ones_like(ids)
        mask[0, 5:] = 0
        kw = {"forward_kwargs": {"attention_mask": mask}}
        return pathattr.LayerDeepLift, m, "bert.embeddings.word_embeddings", ids, 0, \
            lambda: (m(ids, attention_mask=mask).logits, m(torch.zeros_like(ids),
                                                             attention_mask=mask).logits), kw
    if name == "gpt2":
        cfg = transformers.GPT2Config(vocab_size=30, n_embd=16, n_layer=2, n_head=2,
                                      n_positions=16, bos_token_id=0, eos_token_id=0)
        m = transformers.GPT2LMHeadModel(cfg).to(dtype).eval()
        ids = torch.randint(0, 30, (2, 6))
        return pathattr.LayerDeepLift, m, "transformer.wte", ids, 0, \
            lambda: (m(ids).logits[:, -1], m(torch.zeros_like(ids)).logits[:, -1]), {}, \
            lambda t: [(5, int(c)) for c in t]
    if name == "vit":
        cfg = transformers.ViTConfig(image_size=8, patch_size=4, hidden_size=16,
                                     num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=32, num_labels=3)
        m = transformers.ViTForImageClassification(cfg).to(dtype).eval()
        x = torch.randn(2, 3, 8, 8, dtype=dtype)
        return pathattr.DeepLift, m, None, x, torch.zeros_like(x), \
            lambda: (m(x).logits, m(torch.zeros_like(x)).logits), {}
    if name.startswith("encoder"):
        m = Encoder(batch_first=name.endswith("batch-first")).to(dtype).eval()
        x = torch.randn(2, 5, 16, dtype=dtype)
        pad = torch.zeros(2, 5, dtype=torch.bool)
        pad[0, 3:] = True
        return pathattr.DeepLift, m, None, x, torch.zeros_like(x), \
            lambda: (m(x, pad), m(torch.zeros_like(x), pad)), \
            {"additional_forward_args": (pad,)}
    if name.startswith(("lstm", "gru")):
        cls = nn.LSTM if name.startswith("lstm") else nn.GRU
        m = Recurrent(cls, batch_first=name.endswith("batch-first")).to(dtype).eval()
        x = torch.randn(2, 5, 4, dtype=dtype)
        return pathattr.DeepLift, m, None, x, torch.zeros_like(x), \
            lambda: (m(x), m(torch.zeros_like(x))), {}
    if name == "swiglu":
        m = SwiGLU().to(dtype).eval()
        x = torch.randn(2, 5, 8, dtype=dtype)
        return pathattr.DeepLift, m, None, x, torch.zeros_like(x), \
            lambda: (m(x), m(torch.zeros_like(x))), {}
    raise KeyError(name)


CASES = ["bert-mask", "gpt2", "vit", "encoder-batch-first", "encoder-seq-first",
         "lstm-batch-first", "lstm-seq-first", "gru-batch-first", "gru-seq-first", "swiglu"]


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
@pytest.mark.parametrize("rule", RULES)
def test_summation_to_delta_on_real_architectures(name, dtype, tol, rule):
    method, m, layer, x, base, outputs, kw, *as_target = case(name, dtype)
    with torch.no_grad():
        out, out_ref = outputs()
    widest = (out - out_ref).abs().argmax(1)
    target = as_target[0](widest) if as_target else widest
    explainer = method(m, rule) if layer is None else method(m, layer, rule)
    r = explainer.attribute(x, base, target=target, **kw)
    moved = (out - out_ref)[torch.arange(len(widest)), widest]
    torch.testing.assert_close(r.info["output_delta"], moved, rtol=1e-5, atol=1e-6)
    relative = (r.delta.abs() / moved.abs()).max().item()
    assert relative < tol, (name, rule, relative)
