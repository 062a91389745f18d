"""DeepLIFT's rules at the level of the mechanism, not the model: the spellings today's language
models use (a hand-written RMSNorm, ``x @ W.T``, keyword ``baddbmm``, ``repeat_interleave``,
custom autograd Functions, constants shaped like the signal), layouts without a batch
dimension, NaN, and compiled models. Every sum is checked against ``F(x) - F(x')`` from plain
forwards."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pathattr
from pathattr.errors import NonFiniteOutput


def _plain_gap(model, x, base, target):
    with torch.no_grad():
        return model(x)[:, target] - model(base)[:, target]


class Norm(nn.Module):
    """A Llama block's shape: RMSNorm, SwiGLU, head; ``written`` spells the norm by hand."""

    def __init__(self, written: bool):
        super().__init__()
        self.written = written
        self.w = nn.Parameter(torch.rand(8) + 0.5)
        self.up, self.gate, self.down = nn.Linear(8, 12), nn.Linear(8, 12), nn.Linear(12, 3)

    def forward(self, x):
        if self.written:
            h = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.w
        else:
            h = F.rms_norm(x, (8,), self.w, 1e-6)
        return self.down(F.silu(self.gate(h)) * self.up(h))


@pytest.mark.parametrize("dtype,bound", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_hand_written_rms_norm_is_exact_at_a_zero_reference_like_f_rms_norm(dtype, bound):
    torch.manual_seed(0)
    written, fused = Norm(True).to(dtype).eval(), Norm(False).to(dtype).eval()
    fused.load_state_dict(written.state_dict())
    x = torch.randn(4, 8, dtype=dtype)
    base = torch.zeros_like(x)
    d_f = _plain_gap(written, x, base, 1)
    a = pathattr.DeepLift(written).attribute(x, base, target=1)
    b = pathattr.DeepLift(fused).attribute(x, base, target=1)
    assert a.info["rules"]["scaled product"] >= 1
    assert ((a.attributions.sum(1) - d_f).abs() / d_f.abs().clamp_min(1e-3)).max() < bound
    torch.testing.assert_close(a.attributions, b.attributions, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype,bound", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_rms_norm_of_tiny_activations_keeps_summation(dtype, bound):
    # Hidden states of size ~1e-3 give a mean square ~1e-6, the norm's eps: rsqrt(v + eps) is
    # steep there and differences of v below 1e-7 are common. The secant must stand (an
    # absolute threshold that swapped in the gradient left relative errors of 1e-4, Gemma2).
    torch.manual_seed(0)
    model = Norm(True).to(dtype).eval()
    x = 1e-3 * torch.randn(6, 8, dtype=dtype)
    base = x + 2e-5 * torch.randn(6, 8, dtype=dtype)
    d_f = _plain_gap(model, x, base, 1)
    with torch.no_grad():  # float32 rounding scales with the outputs, not their difference
        scale = torch.maximum(model(x)[:, 1].abs(), d_f.abs())
    for rule in ("rescale", "revealcancel"):
        r = pathattr.DeepLift(model, nonlinearity=rule).attribute(x, base, target=1)
        assert ((r.attributions.sum(1) - d_f).abs() / scale).max() < bound


class Falcon(nn.Module):
    def __init__(self):
        super().__init__()
        self.w, self.b = nn.Parameter(torch.randn(6, 5)), nn.Parameter(torch.randn(6))
        self.head = nn.Linear(6, 2)

    def forward(self, x):
        return self.head(F.gelu(x @ self.w.T + self.b))


def test_matmul_by_a_constant_is_a_linear_layer_for_reveal_cancel():
    torch.manual_seed(0)
    m = Falcon().double().eval()
    x = torch.randn(3, 5, dtype=torch.double)
    r = pathattr.DeepLift(m, nonlinearity="revealcancel").attribute(x, target=0)
    assert r.info["rules"] == {"revealcancel": 1}
    torch.testing.assert_close(r.attributions.sum(1), _plain_gap(m, x, torch.zeros_like(x), 0))
    # the same network as nn.Linear: the same RevealCancel contributions
    lin = nn.Sequential(nn.Linear(5, 6), nn.GELU(), m.head).double().eval()
    lin[0].weight.data, lin[0].bias.data = m.w.data.clone(), m.b.data.clone()
    ref = pathattr.DeepLift(lin, nonlinearity="revealcancel").attribute(x, target=0)
    torch.testing.assert_close(r.attributions, ref.attributions)


class Alibi(nn.Module):
    """BLOOM's scores: ``alibi.baddbmm(batch1=q, batch2=k^T, beta=1, alpha=s)``, heads in the
    batch dimension (``B * H``), keys repeated per group of heads (GQA)."""

    def __init__(self):
        super().__init__()
        self.q, self.k, self.head = nn.Linear(4, 8), nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x):  # x: (B, L, 4)
        b, n, _ = x.shape
        q = self.q(x).view(b, n, 4, 2).transpose(1, 2)              # 4 heads
        k = self.k(x).view(b, n, 2, 2).transpose(1, 2).repeat_interleave(2, 1)
        alibi = torch.zeros(b * 4, n, n, dtype=x.dtype)
        scores = alibi.baddbmm(batch1=q.reshape(b * 4, n, 2),
                               batch2=k.reshape(b * 4, n, 2).transpose(1, 2), beta=1.0,
                               alpha=0.5)
        probs = torch.softmax(scores, -1)
        ones = torch.ones(b * 4, n, 1, dtype=x.dtype).expand_as(scores[..., :1])  # a constant
        ctx = torch.bmm(probs, ones + scores[..., :1])
        return self.head(F.relu(ctx.view(b, 4, n).transpose(1, 2)).reshape(b, n, 4)).sum(1)


def test_keyword_baddbmm_repeat_interleave_and_layouts_without_the_batch_dimension():
    torch.manual_seed(0)
    m = Alibi().double().eval()
    x = torch.randn(3, 5, 4, dtype=torch.double)
    base = 0.1 * torch.randn_like(x)
    r = pathattr.DeepLift(m).attribute(x, base, target=1)
    torch.testing.assert_close(r.attributions.flatten(1).sum(1), _plain_gap(m, x, base, 1),
                               rtol=1e-10, atol=1e-12)


class Mixing(nn.Module):
    """A model that mixes the examples of a batch: its per-example gaps must show it."""

    def forward(self, x):
        return torch.tanh(x.sum(0, keepdim=True).expand_as(x) + x)


def test_a_model_mixing_examples_is_reported_by_the_per_example_gap():
    x = torch.randn(3, 4, dtype=torch.double)
    r = pathattr.DeepLift(Mixing()).attribute(x, target=0)
    assert r.delta.abs().max() > 1e-3


class Gelu(torch.autograd.Function):
    """A fused activation with a hand-written backward, as BLOOM ships its GeLU."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * 0.5 * (1.0 + torch.tanh(0.79788456 * x * (1 + 0.044715 * x * x)))

    @staticmethod
    def backward(ctx, g):
        raise AssertionError("DeepLIFT must not call the hand-written backward")


class Custom(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 6), nn.Linear(6, 2)

    def forward(self, x):
        return self.b(Gelu.apply(self.a(x)))


def test_a_custom_autograd_function_runs_as_its_forward_and_apply_is_restored():
    torch.manual_seed(0)
    m = Custom().double().eval()
    x = torch.randn(3, 4, dtype=torch.double)
    apply = torch.autograd.Function.apply
    r = pathattr.DeepLift(m).attribute(x, target=1)
    assert r.info["rules"]["custom Function forward"] == 1
    torch.testing.assert_close(r.attributions.sum(1), _plain_gap(m, x, torch.zeros_like(x), 1),
                               rtol=1e-10, atol=1e-12)
    assert torch.autograd.Function.apply == apply


def test_nan_output_is_named_for_deeplift_and_layer_deeplift():
    m = nn.Sequential(nn.Linear(3, 2)).double().eval()
    m[0].weight.data.fill_(1.0)
    x = torch.tensor([[1.0, 2.0, 3.0], [-1.0, -1.0, -1.0]], dtype=torch.double)

    class Log(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = m

        def forward(self, t):
            return self.lin(t).log()

    model = Log().eval()
    with pytest.raises(NonFiniteOutput, match="example 1"):
        pathattr.DeepLift(model).attribute(x, target=0)
    with pytest.raises(NonFiniteOutput, match="example 1"):
        pathattr.LayerDeepLift(model, "lin").attribute(x, target=0)


def test_compiled_models_give_the_eager_results_and_are_left_as_they_came():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).double().eval()
    c = torch.compile(m)
    x = torch.randn(2, 4, dtype=torch.double)
    calls = [lambda mm: pathattr.IntegratedGradients(mm).attribute(x, target=0, steps=8),
             lambda mm: pathattr.LayerIntegratedGradients(mm, "1").attribute(x, target=0, steps=8),
             lambda mm: pathattr.LayerConductance(mm, "1").attribute(x, target=0, steps=8),
             lambda mm: pathattr.DeepLift(mm).attribute(x, target=0),
             lambda mm: pathattr.LayerDeepLift(mm, "1").attribute(x, target=0)]
    for call in calls:
        torch.testing.assert_close(call(c).attributions, call(m).attributions)
    prefixed = pathattr.LayerIntegratedGradients(c, "_orig_mod.1").attribute(x, target=0, steps=8)
    torch.testing.assert_close(prefixed.attributions, calls[1](m).attributions)
    assert not any(mod._forward_hooks or mod._forward_pre_hooks for mod in m.modules())
    assert all(p.requires_grad for p in m.parameters())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_runs_the_rules_in_float32_and_measures_the_models_own_gap(dtype):
    # bf16 DeepLIFT on DistilBERT with a mask was 36 % (L2) from the float32 model's; fp16
    # overflowed a LayerNorm multiplier (7e4) and raised. LayerIG's float32 sums of bf16
    # gradients raised a dtype error.
    import transformers

    torch.manual_seed(0)
    cfg = transformers.DistilBertConfig(vocab_size=40, dim=32, n_layers=2, n_heads=4,
                                        hidden_dim=64)
    model = transformers.DistilBertForSequenceClassification(cfg).eval()
    x = torch.randint(3, 39, (2, 8))
    mask = torch.ones_like(x)
    mask[1, -3:] = 0
    base, kw, layer = torch.zeros_like(x), {"attention_mask": mask}, \
        "distilbert.embeddings.word_embeddings"
    want = pathattr.LayerDeepLift(model, layer).attribute(x, base, target=1, forward_kwargs=kw)
    half = model.to(dtype)
    before = [p.clone() for p in half.parameters()]
    with torch.no_grad():
        f = [half(input_ids=t, attention_mask=mask).logits[:, 1].float() for t in (x, base)]
    for r in (pathattr.LayerDeepLift(half, layer).attribute(x, base, target=1, forward_kwargs=kw),
              pathattr.LayerIntegratedGradients(half, layer).attribute(
                  x, base, target=1, steps=32, forward_kwargs=kw)):
        assert r.attributions.dtype == torch.float32
        # the gap is the half model's own, from its plain forwards
        torch.testing.assert_close(r.delta, r.attributions.flatten(1).sum(1) - (f[0] - f[1]),
                                   rtol=0, atol=1e-6)
    dl = pathattr.LayerDeepLift(half, layer).attribute(x, base, target=1, forward_kwargs=kw)
    assert (dl.attributions - want.attributions).norm() / want.attributions.norm() < 1e-2
    assert all(p.dtype == dtype and torch.equal(p, q) for p, q in zip(half.parameters(), before))


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.h, self.r = nn.Linear(4, 5), nn.Linear(3, 5), nn.Linear(5, 2), \
            nn.ReLU()

    def forward(self, x, y):
        return self.h(self.r(self.a(x) + self.b(y)))


def test_custom_attribution_func_equals_captums():
    from captum.attr import DeepLift as CaptumDeepLift
    from captum.attr import LayerDeepLift as CaptumLayerDeepLift

    torch.manual_seed(0)
    m = TwoInputs().double().eval()
    x, y = torch.randn(3, 4, dtype=torch.double), torch.randn(3, 3, dtype=torch.double)
    bx, by = torch.zeros_like(x), torch.full_like(y, 0.2)

    def squared(mult, inp, base):
        return tuple(mm * (ii - bb) ** 2 for mm, ii, bb in zip(mult, inp, base))

    def doubled(mult):
        return tuple(2 * mm for mm in mult)

    r = pathattr.DeepLift(m).attribute((x, y), (bx, by), target=1,
                                       custom_attribution_func=squared)
    want = CaptumDeepLift(m).attribute((x, y), (bx, by), target=1,
                                       custom_attribution_func=squared)
    for a, b in zip(r.attributions, want, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    # the gap is the returned attributions' own
    gap = sum(a.sum(1) for a in r.attributions) - _plain_gap(
        lambda t: m(*t), (x, y), (bx, by), 1)
    torch.testing.assert_close(r.delta, gap)
    lr = pathattr.LayerDeepLift(m, "h").attribute((x, y), (bx, by), target=1,
                                                  custom_attribution_func=doubled)
    lw = CaptumLayerDeepLift(m, m.h).attribute((x, y), (bx, by), target=1,
                                               custom_attribution_func=doubled)
    torch.testing.assert_close(lr.attributions, lw, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="shaped like the multipliers"):
        pathattr.DeepLift(m).attribute((x, y), (bx, by), target=1,
                                       custom_attribution_func=lambda mult: mult[:1])


class Masked(nn.Module):
    """A mask built from the signal, as TransformerLens's attention does with ``isnan``."""

    def forward(self, x):
        keep = ~torch.isnan(x)
        return torch.where(keep, x, 0.0).tanh().sum(1, keepdim=True)


class Gate(nn.Module):
    """A comparison whose result differs between the input and its reference."""

    def forward(self, x):
        return (x * (x > 0.5)).sum(1, keepdim=True)


def test_a_discrete_result_of_the_signal_is_a_constant_only_where_both_runs_agree():
    from pathattr.methods.deeplift import NoDeepLiftRule

    torch.manual_seed(0)
    x, base = torch.randn(4, 5, dtype=torch.double), torch.zeros(4, 5, dtype=torch.double)
    r = pathattr.DeepLift(Masked()).attribute(x, base, target=0)
    gap = _plain_gap(Masked(), x, base, 0)
    torch.testing.assert_close(r.attributions.sum(1), gap, rtol=0, atol=1e-12)
    assert r.info["rules"]["held constant"] > 0
    with pytest.raises(NoDeepLiftRule, match="differs from the reference"):
        pathattr.DeepLift(Gate()).attribute(x.abs() + 1, base, target=0)
    with pytest.warns(UserWarning, match="no rule"):
        pathattr.DeepLift(Gate(), allow_gradient_fallback=True).attribute(
            x.abs() + 1, base, target=0)
