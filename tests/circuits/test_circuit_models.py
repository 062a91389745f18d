"""Circuits on TransformerLens ``HookedTransformer`` (attention-only and with MLPs) and on
nnsight wrappers, as they come: patching against TransformerLens's own ``run_with_hooks``, a
cut's conductance against two plain forwards (float64, 1e-10), IG on activations against the
patch it integrates. Random weights from configs, nothing downloaded."""

from __future__ import annotations

import pytest
import torch

import pathattr.circuits as C

tl = pytest.importorskip("transformer_lens")
B, L, V = 3, 8, 50
METRIC = C.logit_diff([1, 2, 3], [4, 5, 6])


def lens(attn_only: bool):
    cfg = tl.HookedTransformerConfig(
        n_layers=2, d_model=32, n_ctx=16, d_head=8, n_heads=4, d_vocab=V, act_fn="gelu",
        attn_only=attn_only, d_mlp=None if attn_only else 64, normalization_type="LN",
        dtype=torch.float64, seed=0)
    return tl.HookedTransformer(cfg).eval()


@pytest.fixture(scope="module")
def prompts():
    g = torch.Generator().manual_seed(1)
    clean = torch.randint(0, V, (B, L), generator=g)
    corrupted = clean.clone()
    corrupted[:, 2] = (clean[:, 2] + 7) % V
    return clean, corrupted


def metric_of(logits):
    return METRIC(logits, torch.arange(len(logits)))


@pytest.mark.parametrize("attn_only", [True, False])
def test_patching_heads_equals_transformer_lens_hooks(prompts, attn_only):
    model = lens(attn_only)
    clean, corrupted = prompts
    p = C.patch(model, clean, corrupted, METRIC)
    assert len(p.names) == 8 and p.names[6] == "blocks.1.attn.head.2"
    _, cache = model.run_with_cache(corrupted)
    with torch.no_grad():
        base = metric_of(model(clean))
        for layer in range(2):
            hook = f"blocks.{layer}.attn.hook_z"
            for h in range(4):
                def swap(z, hook=None, h=h, zc=cache[hook]):  # noqa: ARG001
                    z = z.clone()
                    z[:, :, h] = zc[:, :, h]
                    return z
                want = metric_of(model.run_with_hooks(clean, fwd_hooks=[(hook, swap)]))
                i = p.names.index(f"blocks.{layer}.attn.head.{h}")
                torch.testing.assert_close(p.scores[:, i], want - base, rtol=0, atol=1e-12)


@pytest.mark.parametrize("attn_only", [True, False])
def test_a_residual_cut_sums_to_the_change_from_plain_forwards(prompts, attn_only):
    model = lens(attn_only)
    clean, corrupted = prompts
    with torch.no_grad():
        change = metric_of(model(clean)) - metric_of(model(corrupted))
    # the logits' input: the metric is linear past it, so the sum telescopes at any steps
    r = C.attribute(model, clean, corrupted, METRIC, components=["unembed:input"], steps=4)
    assert r.delta is not None
    assert (r.scores.sum(1) - change).abs().max() <= 1e-10 * change.abs().max()
    # the residual stream: a quadrature error (second order in the steps), refined to tol
    r = C.attribute(model, clean, corrupted, METRIC, components=["blocks.1.hook_resid_post"],
                    steps="auto", tol=1e-6)
    assert r.delta is not None and r.info["converged"].all() and r.info["steps"] <= 512
    assert ((r.scores.sum(1) - change).abs() <= 1e-6 * change.abs()).all()
    coarse = C.attribute(model, clean, corrupted, METRIC,
                         components=["blocks.1.hook_resid_post"], steps=16)
    assert coarse.delta is not None and (coarse.delta.abs() > r.delta.abs()).all()
    heads = C.attribute(model, clean, corrupted, METRIC, steps=8)
    assert heads.delta is None and "not a cut" in heads.info["cut"]


def test_mlps_neurons_and_ig_on_activations(prompts):
    model = lens(attn_only=False)
    clean, corrupted = prompts
    assert C.components(model, "mlps") == ["blocks.0.mlp", "blocks.1.mlp"]
    assert C.components(model, "neurons")[64 + 3] == "blocks.1.mlp.neuron.3"
    p = C.patch(model, clean, corrupted, METRIC, components="mlps")
    r = C.attribute(model, clean, corrupted, METRIC, components="mlps",
                    method="ig-activations", steps=24)
    torch.testing.assert_close(r.scores, -p.scores, rtol=0, atol=1e-10)
    with pytest.raises(ValueError, match="components='mlps': found none"):
        C.components(lens(attn_only=True), "mlps")


def test_nnsight_wrappers_are_unwrapped(prompts):
    nnsight = pytest.importorskip("nnsight")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=2, n_head=4, n_embd=32, vocab_size=V,
                                  n_positions=16, bos_token_id=0, eos_token_id=0)
    hf = transformers.GPT2LMHeadModel(cfg).double().eval()
    clean, corrupted = prompts
    plain = C.attribute(hf, clean, corrupted, METRIC, steps=8)
    wrapped = C.attribute(nnsight.NNsight(hf), clean, corrupted, METRIC, steps=8)
    assert wrapped.names == plain.names
    torch.testing.assert_close(wrapped.scores, plain.scores, rtol=0, atol=0)


@pytest.mark.parametrize("method", ["deeplift", "revealcancel"])
def test_deeplift_on_lens_attention_holds_its_nan_mask_constant(prompts, method):
    """TransformerLens builds a mask with ``isnan`` from the attention scores: a boolean of
    the signal, equal in both runs, so DeepLIFT stays exact without a gradient fallback."""
    model = lens(attn_only=True)
    clean, corrupted = prompts
    with torch.no_grad():
        change = metric_of(model(clean)) - metric_of(model(corrupted))
    r = C.attribute(model, clean, corrupted, METRIC, components=["blocks.1.hook_resid_post"],
                    method=method)
    assert (r.scores.sum(1) - change).abs().max() <= 1e-10 * change.abs().max()
    heads = C.attribute(model, clean, corrupted, METRIC, method=method)
    assert heads.scores.shape == (B, 8) and heads.delta is None
