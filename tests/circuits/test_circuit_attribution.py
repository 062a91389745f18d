"""Circuits against plain forwards and hooks written here: activation patching against
hand-written hooks, total conductance over a cut against ``m(clean) - m(corrupted)``
recomputed from two forwards (float64, 1e-10), IG on activations against the patch it
integrates, AtP against a gradient taken by hand; every causal family of ``test_families``;
the arguments refused by name. Random weights, nothing downloaded."""

from __future__ import annotations

import pytest
import torch

import pathattr.circuits as C

T = pytest.importorskip("transformers")
B, L, V = 3, 8, 50


def gpt2(layers: int = 2, heads: int = 4):
    torch.manual_seed(0)
    cfg = T.GPT2Config(n_layer=layers, n_head=heads, n_embd=32, vocab_size=V, n_positions=16,
                       bos_token_id=0, eos_token_id=0)
    cfg._attn_implementation = "eager"
    return T.GPT2LMHeadModel(cfg).double().eval()


@pytest.fixture(scope="module")
def model():
    return gpt2()


@pytest.fixture(scope="module")
def prompts():
    g = torch.Generator().manual_seed(1)
    clean = torch.randint(0, V, (B, L), generator=g)
    corrupted = clean.clone()
    corrupted[:, 2] = (clean[:, 2] + 7) % V
    return clean, corrupted


METRIC = C.logit_diff([1, 2, 3], [4, 5, 6])


def m(model, ids, hooks=()):
    """The metric from a plain forward, with ``hooks`` ``(module, pre, fn)`` installed."""
    handles = [mod.register_forward_pre_hook(fn) if pre else mod.register_forward_hook(fn)
               for mod, pre, fn in hooks]
    try:
        with torch.no_grad():
            return METRIC(model(ids).logits, torch.arange(len(ids)))
    finally:
        for h in handles:
            h.remove()


def c_proj_input(model, layer, ids):
    seen = {}
    attn = model.transformer.h[layer].attn
    m(model, ids, [(attn.c_proj, True, lambda _m, a: seen.setdefault("z", a[0].clone()))])
    return seen["z"]


def test_patch_equals_hand_written_hooks(model, prompts):
    clean, corrupted = prompts
    p = C.patch(model, clean, corrupted, METRIC, batch_size=5)  # 5: chunks cut examples
    d = 32 // 4
    base = m(model, clean)
    for layer in range(2):
        z_corrupted = c_proj_input(model, layer, corrupted)
        for h in range(4):
            def swap(_m, args, h=h, zc=z_corrupted):
                z = args[0].clone()
                z[..., h * d:(h + 1) * d] = zc[..., h * d:(h + 1) * d]
                return (z,)
            want = m(model, clean, [(model.transformer.h[layer].attn.c_proj, True, swap)])
            i = p.names.index(f"transformer.h.{layer}.attn.head.{h}")
            torch.testing.assert_close(p.scores[:, i], want - base, rtol=0, atol=1e-12)
    # denoising MLPs: the clean output into the corrupted run
    q = C.patch(model, clean, corrupted, METRIC, components="mlps", direction="denoising")
    out = {}
    mlp = model.transformer.h[1].mlp
    m(model, clean, [(mlp, False, lambda _m, _a, o: out.setdefault("y", o.clone()))])
    want = m(model, corrupted, [(mlp, False, lambda _m, _a, o: out["y"])]) - m(model, corrupted)
    torch.testing.assert_close(q.scores[:, q.names.index("transformer.h.1.mlp")], want,
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("method", ["conductance", "eap-ig", "atp", "clean-corrupted",
                                    "deeplift", "revealcancel"])
def test_a_cut_sums_to_the_change_recomputed_from_two_forwards(model, prompts, method):
    clean, corrupted = prompts
    change = m(model, clean) - m(model, corrupted)
    r = C.attribute(model, clean, corrupted, METRIC, components=["transformer.ln_f"],
                    method=method, steps=32)
    torch.testing.assert_close(r.change, change, rtol=0, atol=1e-12)
    assert r.delta is not None and "cut" in r.info["cut"]
    torch.testing.assert_close(r.delta, r.scores.sum(1) - change, rtol=0, atol=1e-12)
    if method in ("conductance", "deeplift", "revealcancel"):  # quadrature error / exact
        assert r.delta.abs().max() <= 1e-10 * change.abs().max()


def test_components_that_are_not_a_cut_have_no_delta(model, prompts):
    clean, corrupted = prompts
    r = C.attribute(model, clean, corrupted, METRIC, components="heads", steps=8)
    assert r.delta is None and "not a cut" in r.info["cut"] and "computed from" in r.info["cut"]
    # one layer's heads: no head reads another, but the residual stream skips them
    r = C.attribute(model, clean, corrupted, METRIC, components=["transformer.h.1.attn[0]"],
                    steps=8)
    assert r.delta is None and "still moves" in r.info["cut"]
    assert r.scores.shape == (B, 1)


def test_ig_on_activations_integrates_each_components_noising_patch(model, prompts):
    clean, corrupted = prompts
    p = C.patch(model, clean, corrupted, METRIC, components="heads")
    r = C.attribute(model, clean, corrupted, METRIC, components="heads",
                    method="ig-activations", steps=24, batch_size=7)
    # the path runs from the component corrupted (the noising patch) to the clean run
    torch.testing.assert_close(r.scores, -p.scores, rtol=0, atol=1e-10)
    assert r.info["gaps"].abs().max() <= 1e-10


def test_atp_is_the_gradient_at_the_clean_run_times_the_difference(model, prompts):
    clean, corrupted = prompts
    mlp = model.transformer.h[0].mlp
    ys = {}
    m(model, corrupted, [(mlp, False, lambda _m, _a, o: ys.setdefault("y0", o.clone()))])
    kept = {}

    def keep(_m, _a, o):
        kept["y"] = o
        o.retain_grad()
        return None

    h = mlp.register_forward_hook(keep)
    try:
        with torch.enable_grad():
            out = METRIC(model(clean).logits, torch.arange(B))
            out.sum().backward()
    finally:
        h.remove()
        model.zero_grad()
    want = (kept["y"].grad * (kept["y"].detach() - ys["y0"])).sum((1, 2))
    r = C.attribute(model, clean, corrupted, METRIC, components="mlps", method="atp")
    torch.testing.assert_close(r.scores[:, 0], want, rtol=1e-10, atol=1e-12)
    one = C.attribute(model, clean, corrupted, METRIC, components="mlps", method="eap-ig",
                      rule="riemann_right", steps=1)
    torch.testing.assert_close(one.scores, r.scores, rtol=0, atol=1e-14)


def test_names_and_kinds(model):
    heads = C.components(model)
    assert len(heads) == 8 and heads[5] == "transformer.h.1.attn.head.1"
    assert [int(s) for s in heads[5].split(".") if s.isdigit()][-2:] == [1, 1]
    assert C.components(model, "mlps") == ["transformer.h.0.mlp", "transformer.h.1.mlp"]
    neurons = C.components(model, "neurons")
    assert len(neurons) == 2 * 4 * 32 and neurons[0] == "transformer.h.0.mlp.neuron.0"


def test_the_model_leaves_as_it_came(model, prompts):
    clean, corrupted = prompts
    hooks = sum(len(mod._forward_hooks) + len(mod._forward_pre_hooks)
                for mod in model.modules())
    flags = [p.requires_grad for p in model.parameters()]
    for method in C.METHODS:
        C.attribute(model, clean, corrupted, METRIC, method=method, steps=4)
    with pytest.raises(ValueError):
        C.attribute(model, clean, corrupted, lambda out: out[:, -1], steps=4)
    assert hooks == sum(len(mod._forward_hooks) + len(mod._forward_pre_hooks)
                        for mod in model.modules())
    assert flags == [p.requires_grad for p in model.parameters()] and not model.training


@pytest.mark.parametrize("call, says", [
    (lambda mo, c, x: C.attribute(mo, c, x[:, :-1], METRIC), "corrupted"),
    (lambda mo, c, x: C.attribute(mo, c, x, lambda out: out[:, -1]), "metric"),
    (lambda mo, c, x: C.attribute(mo, c, x, METRIC, components=["transformer.ln_f"] * 2),
     "more than once"),
    (lambda mo, c, x: C.attribute(mo, c, x, METRIC, components=["transformer.nope"]),
     "transformer.nope"),
    (lambda mo, c, x: C.attribute(mo, c, x, METRIC, components="layers"), "components"),
    (lambda mo, c, x: C.attribute(mo, c, x, METRIC, method="acdc"), "method"),
    (lambda mo, c, x: C.patch(mo, c, x, METRIC, direction="sideways"), "direction"),
    (lambda mo, c, x: C.attribute(mo, c, x, METRIC, rule="simpson"), "rule"),
    (lambda mo, c, x: C.attribute(object(), c, x, METRIC), "model"),
])
def test_bad_arguments_are_refused_by_name(model, prompts, call, says):
    clean, corrupted = prompts
    with pytest.raises((ValueError, TypeError, KeyError)) as e:
        call(model, clean, corrupted)
    assert says in str(e.value)


def causal_families():
    from test_families import FAMILIES

    return {k: f for k, f in FAMILIES.items() if f.kind == "causal"}


@pytest.mark.parametrize("family", sorted(causal_families()))
def test_every_causal_family(family):
    """Heads found without naming hooks, patching runs, and the logits' input is a cut whose
    conductance sums to the change recomputed from plain forwards."""
    from test_families import _model

    f = causal_families()[family]
    net = _model(family, torch.float64 if f.float64 else torch.float32)
    g = torch.Generator().manual_seed(2)
    clean = torch.randint(3, 40, (2, 6), generator=g)
    corrupted = clean.clone()
    corrupted[:, 1] = (clean[:, 1] + 5) % 37 + 3
    metric = C.logit_diff(5, 6)
    n_heads = getattr(net.config, "num_attention_heads", None)
    if n_heads is None:  # no attention (Mamba): said so, by name
        with pytest.raises(ValueError, match="components='heads': found none"):
            C.components(net)
    else:
        heads = C.components(net)
        assert len(heads) == net.config.num_hidden_layers * n_heads, heads
        p = C.patch(net, clean, corrupted, metric)
        assert p.scores.shape == (2, len(heads)) and torch.isfinite(p.scores).all()
    with torch.no_grad():
        change = (metric(net(clean).logits, torch.arange(2))
                  - metric(net(corrupted).logits, torch.arange(2)))
    r = C.attribute(net, clean, corrupted, metric, components=["lm_head:input"], steps=32)
    assert r.delta is not None
    tol = 1e-8 if f.float64 and not f.upcasts else 1e-3
    assert (r.scores.sum(1) - change).abs().max() <= tol * max(1.0, float(change.abs().max()))
