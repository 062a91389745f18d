"""SequenceAttribution: one shared path for every target token, checked against per-token
LayerIntegratedGradients on each prefix, Captum's LayerIntegratedGradients, completeness and
batch independence with padding."""

import pytest
import torch
from captum import attr as ca
from torch import nn

import pathattr

transformers = pytest.importorskip("transformers")
D = torch.float64


def gpt2():
    cfg = transformers.GPT2Config(vocab_size=50, n_embd=16, n_layer=2, n_head=2, n_positions=32)
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(cfg).to(D).eval()


def llama():
    cfg = transformers.LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=24,
                                   num_hidden_layers=2, num_attention_heads=2,
                                   num_key_value_heads=1, max_position_embeddings=32)
    torch.manual_seed(1)
    return transformers.LlamaForCausalLM(cfg).to(D).eval()


def prompts():
    ids = torch.tensor([[5, 9, 13, 2, 7], [0, 0, 11, 4, 8]])  # the second left-padded
    mask = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]])
    return ids, mask


def per_token(model, seq, mask, targets, n_prompt, layer, score="logit", steps=24):
    """LayerIG on each prefix separately: the reference the shared path must equal."""
    pos = (mask.cumsum(1) - 1).clamp(min=0)
    out = torch.zeros(*targets.shape, seq.shape[1], dtype=D)
    for t in range(targets.shape[1]):
        end = n_prompt + t
        lig = pathattr.LayerIntegratedGradients(model, layer)
        tgt = [(end - 1, int(targets[i, t])) for i in range(len(seq))]
        if score == "logit":
            kw = {"target": tgt}
        else:
            def pick(logits, ex, t=t, end=end):
                lp = logits[:, end - 1].log_softmax(-1)
                return lp[torch.arange(len(lp)), targets[ex, t]]
            kw = {"target": pick}
        r = lig.attribute(seq[:, :end], 0, steps=steps, forward_kwargs={
            "attention_mask": mask[:, :end], "position_ids": pos[:, :end]}, **kw)
        out[:, t, :end] = r.attributions.sum(-1)
    return out


@pytest.mark.parametrize("build, layer", [(gpt2, "transformer.wte"),
                                          (llama, "model.embed_tokens")])
@pytest.mark.parametrize("score", ["logit", "logprob"])
def test_shared_path_equals_per_token_attribution(build, layer, score):
    model = build()
    ids, mask = prompts()
    targets = torch.tensor([[3, 17, 21], [6, 6, 40]])
    r = pathattr.SequenceAttribution(model).attribute(ids, targets, baselines=0,
                                                      attention_mask=mask, score=score,
                                                      steps=24)
    assert r.scores.shape == (2, 3, 8) and r.delta.shape == (2, 3)
    ref = per_token(model, r.input_ids, r.attention_mask, targets, 5, layer, score)
    torch.testing.assert_close(r.scores, ref, rtol=1e-9, atol=1e-12)
    for t in range(3):  # causal: nothing at or after the target's own position
        assert r.scores[:, t, 5 + t:].abs().max() == 0
    rel = r.delta.abs() / r.info["output_delta"].abs()
    assert rel.max() < 1e-2


def test_equals_captum_layer_ig_per_target_and_completeness():
    model = gpt2()
    ids = torch.tensor([[5, 9, 13, 2]])
    targets = torch.tensor([[3, 17]])
    r = pathattr.SequenceAttribution(model).attribute(ids, targets, baselines=0, steps=32)
    seq = r.input_ids
    for t in range(2):
        end = 4 + t
        lig = ca.LayerIntegratedGradients(lambda i, end=end, t=t: model(i).logits[:, end - 1],
                                          model.transformer.wte)
        theirs = lig.attribute(seq[:, :end], torch.zeros_like(seq[:, :end]),
                               target=int(targets[0, t]), n_steps=32).sum(-1)
        torch.testing.assert_close(r.scores[:, t, :end], theirs, rtol=1e-7, atol=1e-9)
    # the gap is the quadrature error: it shrinks with steps
    fine = pathattr.SequenceAttribution(model).attribute(ids, targets, baselines=0, steps=128)
    assert fine.delta.abs().max() < r.delta.abs().max() + 1e-12


def test_batch_independence_padding_and_foil():
    model = gpt2()
    ids, mask = prompts()
    targets = torch.tensor([[3, 17], [6, 40]])
    sa = pathattr.SequenceAttribution(model)
    both = sa.attribute(ids, targets, baselines=0, attention_mask=mask, steps=16)
    alone = sa.attribute(ids[1:, 2:], targets[1:], baselines=0, steps=16)
    torch.testing.assert_close(both.scores[1, :, 2:], alone.scores[0], rtol=1e-9, atol=1e-12)
    # right padding is moved to the left: the same result
    right = sa.attribute(torch.tensor([[11, 4, 8, 0, 0]]), targets[1:], baselines=0,
                         attention_mask=torch.tensor([[1, 1, 1, 0, 0]]), steps=16)
    torch.testing.assert_close(right.scores, both.scores[1:], rtol=1e-9, atol=1e-12)
    # a contrast with a foil is the difference of the two single-token attributions (IG is
    # linear in the explained function on a fixed path)
    foil = torch.tensor([[1, 2], [3, 4]])
    contrast = sa.attribute(ids, targets, baselines=0, attention_mask=mask, foil_ids=foil,
                            steps=16)
    seq, m = contrast.input_ids, contrast.attention_mask
    ref = (per_token(model, seq, m, targets, 5, "transformer.wte", steps=16)
           - per_token(model, seq, m, foil, 5, "transformer.wte", steps=16))
    torch.testing.assert_close(contrast.scores, ref, rtol=1e-9, atol=1e-12)


def test_generation_and_errors():
    model = gpt2()
    ids, mask = prompts()
    sa = pathattr.SequenceAttribution(model)
    r = sa.attribute(ids, max_new_tokens=3, attention_mask=mask, score="prob", steps=8)
    with torch.no_grad():  # greedy: each generated token is the argmax after its prefix
        for t in range(3):
            seq, m = r.input_ids[:, :5 + t], r.attention_mask[:, :5 + t]
            logits = model(seq, attention_mask=m,
                           position_ids=(m.cumsum(1) - 1).clamp(min=0)).logits[:, -1]
            assert torch.equal(logits.argmax(-1), r.target_ids[:, t])
    ixg = pathattr.SequenceAttribution(model, method="input-x-gradient").attribute(
        ids, r.target_ids, attention_mask=mask)
    assert ixg.scores.shape == r.scores.shape and ixg.info["steps"] == 1
    with pytest.raises(TypeError, match="exactly one of target_ids"):
        sa.attribute(ids)
    with pytest.raises(TypeError, match="input_ids must be an integer tensor"):
        sa.attribute(ids.double(), max_new_tokens=1)
    with pytest.raises(ValueError, match="score must be one of"):
        sa.attribute(ids, max_new_tokens=1, score="margin")


def t5():
    cfg = transformers.T5Config(vocab_size=40, d_model=16, d_kv=8, d_ff=24, num_layers=1,
                                num_decoder_layers=1, num_heads=2, decoder_start_token_id=0,
                                pad_token_id=0)
    torch.manual_seed(2)
    return transformers.T5ForConditionalGeneration(cfg).to(D).eval()


def test_encoder_decoder_shared_path_equals_per_token():
    from pathattr.methods.sequence.tokens import _EncoderDecoder

    model = t5()
    ids = torch.tensor([[5, 9, 13, 2], [7, 11, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    targets = torch.tensor([[3, 17, 21], [6, 6, 30]])
    sa = pathattr.SequenceAttribution(model)
    # the encoder's and the decoder's embeddings (one module called twice when shared)
    assert len(sa.layers) == 2
    r = sa.attribute(ids, targets, attention_mask=mask, steps=24)
    assert r.scores.shape == (2, 3, 4 + 3)
    wrapped = _EncoderDecoder(model)
    for t in range(3):
        dec = r.input_ids[:, 4:5 + t]  # the start token and the targets before t
        lig = pathattr.LayerIntegratedGradients(wrapped, sa.layers)
        ref = lig.attribute((ids, dec), 0, target=[(t, int(targets[i, t])) for i in range(2)],
                            steps=24, forward_kwargs={"attention_mask": mask})
        enc, de = (a.sum(-1) for a in ref.attributions)
        torch.testing.assert_close(r.scores[:, t, :4], enc, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(r.scores[:, t, 4:5 + t], de, rtol=1e-9, atol=1e-12)
        assert (r.scores[:, t, 5 + t:] == 0).all()  # later decoder tokens: nothing
        # the same completeness gap (RMSNorm of the zero-id embeddings makes it quadrature-
        # heavy near the baseline: 0.1 relative at 24 steps for both)
        torch.testing.assert_close(r.delta[:, t], ref.delta, rtol=1e-8, atol=1e-12)
    assert r.scores[1, :, 2:4].abs().max() < 1e-12  # masked encoder padding gets nothing
    gen = sa.attribute(ids, max_new_tokens=2, attention_mask=mask, steps=4)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask,
                       decoder_input_ids=gen.input_ids[:, 4:6]).logits
    assert torch.equal(logits.argmax(-1), gen.target_ids)


def test_aggregate_pieces_into_words():
    model = gpt2()
    ids = torch.tensor([[5, 9, 13, 2, 7]])
    r = pathattr.SequenceAttribution(model).attribute(ids, torch.tensor([[3, 4]]), steps=8)
    groups = torch.tensor([[-1, 0, 0, 1, 2, 2, 3]])  # position 0 left out
    s = r.scores[0]
    torch.testing.assert_close(r.aggregate(groups)[0],
                               torch.stack([s[:, 1] + s[:, 2], s[:, 3], s[:, 4] + s[:, 5],
                                            s[:, 6]], 1))
    mean = r.aggregate(groups, "mean")[0]
    torch.testing.assert_close(mean[:, 0], (s[:, 1] + s[:, 2]) / 2)
    big = r.aggregate(groups, "absmax")[0]
    pair = s[:, 1:3]
    torch.testing.assert_close(big[:, 0], pair.gather(1, pair.abs().argmax(1, keepdim=True))[:, 0])
    with pytest.raises(ValueError, match="one group per position"):
        r.aggregate(groups[:, :3])


@pytest.mark.parametrize("build, layer", [(gpt2, "transformer.wte"),
                                          (llama, "model.embed_tokens"), (None, None)])
def test_deeplift_per_target_equals_layer_deeplift_per_prefix_and_sums_exactly(build, layer):
    # One reference and one input forward, then one backward per target: equal to LayerDeepLift
    # run on each prefix separately, and exact to rounding (Llama: RMSNorm, SwiGLU, rotary
    # embeddings, grouped-query SDPA; T5: relative attention, two embeddings).
    if build is None:
        model, ids = t5(), torch.tensor([[5, 9, 13, 2], [7, 11, 0, 0]])
        mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    else:
        model, (ids, mask) = build(), prompts()
    targets = torch.tensor([[3, 17, 21], [6, 6, 30]])
    r = pathattr.SequenceAttribution(model, method="deeplift").attribute(
        ids, targets, baselines=0, attention_mask=mask, score="logprob")
    assert r.alphas is None and r.delta.shape == (2, 3)
    # exact to the model's own rounding: Llama's and T5's RMSNorm compute in float32 even in a
    # float64 model (3e-7 relative measured), GPT-2 is float64 throughout
    tol = 1e-10 if build is gpt2 else 2e-6
    assert (r.delta.abs() / r.info["output_delta"].abs()).max() < tol
    if build is None:
        assert r.scores[1, :, 2:4].abs().max() < 1e-12  # masked encoder padding
        return
    pos = (r.attention_mask.cumsum(1) - 1).clamp(min=0)
    for t in range(3):
        end = 5 + t

        def pick(logits, ex, t=t, end=end):
            lp = logits[:, end - 1].log_softmax(-1)
            return lp[torch.arange(len(lp)), targets[ex, t]]
        ref = pathattr.LayerDeepLift(model, layer).attribute(
            r.input_ids[:, :end], 0, target=pick, forward_kwargs={
                "attention_mask": r.attention_mask[:, :end], "position_ids": pos[:, :end]})
        torch.testing.assert_close(r.scores[:, t, :end], ref.attributions.sum(-1), rtol=1e-9,
                                   atol=1e-12)
        assert r.scores[:, t, end:].abs().max() == 0


@pytest.mark.slow
def test_word_groups_from_a_real_tokenizers_offsets():
    from pathattr.methods.sequence import word_groups
    from pathattr.zoo.text import minilm

    tokenizer, _ = minilm()
    enc = tokenizer(["unbelievably tokenized words"], return_offsets_mapping=True,
                    return_tensors="pt")
    groups = word_groups(enc["offset_mapping"])
    # the tokenizer's own word ids (None for [CLS]/[SEP])
    want = [-1 if w is None else w for w in enc.word_ids(0)]
    assert groups[0].tolist() == want
    pieces = tokenizer.convert_ids_to_tokens(enc["input_ids"][0])
    assert len(pieces) > len(set(want)) + 1  # some word really is split into pieces
    # punctuation without a space joins its word (the pre-tokenizer would split it off)
    enc = tokenizer(["fine, thanks"], return_offsets_mapping=True, return_tensors="pt")
    assert word_groups(enc["offset_mapping"])[0].tolist() == [-1, 0, 0, 1, -1]
    with pytest.raises(ValueError, match="character spans"):
        word_groups(torch.zeros(1, 3))


def test_progress_bar_counts_the_backwards(capsys):
    model = gpt2()
    r = pathattr.SequenceAttribution(model).attribute(
        torch.tensor([[5, 9, 13]]), torch.tensor([[3, 4]]), steps=6, progress=True)
    err = capsys.readouterr().err
    assert "/12 [" in err and "backward" in err  # 6 points x 2 targets
    assert r.scores.shape == (1, 2, 5)


class OnEmbeddings(torch.nn.Module):
    """GPT-2 called on its token embeddings: the input-level methods then run in the same
    space as the shared path, an independent reference for it."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, embeds, attention_mask, position_ids):
        return self.model(inputs_embeds=embeds, attention_mask=attention_mask,
                          position_ids=position_ids).logits


def per_token_input(model, r, method, **kw):
    """``method`` (an input-level pathattr class) on each target's prefix, in embedding space,
    with the target's logit as the output: scores ``(B, T, L)``, deltas and infos."""
    seq, mask, targets = r.input_ids, r.attention_mask, r.target_ids
    n_prompt = r.info["prompt_length"]
    pos = (mask.cumsum(1) - 1).clamp(min=0)
    wte = model.get_input_embeddings()
    scores = torch.zeros_like(r.scores)
    deltas, infos = torch.zeros_like(r.delta), []
    with torch.no_grad():
        emb, ref = wte(seq), wte(torch.zeros_like(seq))
    for t in range(targets.shape[1]):
        end = n_prompt + t

        def pick(logits, ex, t=t, end=end):
            return logits[torch.arange(len(ex)), end - 1, targets[ex, t]]

        out = method(OnEmbeddings(model)).attribute(
            emb[:, :end], ref[:, :end], pick, forward_kwargs={
                "attention_mask": mask[:, :end], "position_ids": pos[:, :end]}, **kw)
        scores[:, t, :end] = out.attributions.sum(-1)
        deltas[:, t] = out.delta
        infos.append(out.info)
    return scores, deltas, infos


@pytest.mark.parametrize("sampling", ["uniform", "adaptive"])
def test_idg_per_target_equals_idg_on_each_prefix(sampling):
    model = gpt2()
    ids, mask = prompts()
    targets = torch.tensor([[3, 17, 21], [6, 6, 40]])
    if sampling == "adaptive":  # the pooled placement is IDG's own for one target
        targets = targets[:, :1]
    sa = pathattr.SequenceAttribution(model, method="idg")
    r = sa.attribute(ids, targets, baselines=0, attention_mask=mask, steps=20,
                     sampling=sampling, coarse_steps=12, rule="riemann_trapezoid")
    ref, ref_delta, _ = per_token_input(model, r, pathattr.IntegratedDecisionGradients,
                                        steps=20, sampling=sampling, coarse_steps=12,
                                        rule="riemann_trapezoid")
    torch.testing.assert_close(r.scores, ref, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(r.delta, ref_delta, rtol=1e-9, atol=1e-12)


def test_idg_adaptive_shares_one_sample_set_for_all_targets():
    model = gpt2()
    ids, mask = prompts()
    targets = torch.tensor([[3, 17, 21], [6, 6, 40]])
    r = pathattr.SequenceAttribution(model, method="idg").attribute(
        ids, targets, baselines=0, attention_mask=mask, steps=16, coarse_steps=10)
    assert r.alphas.shape == r.weights.shape == (2, 16)  # one sample set per example
    assert (r.weights.sum(1) <= 1 + 1e-12).all()  # cells where no target moves get none
    # the pooled placement still resolves every target's path with enough samples
    fine = pathattr.SequenceAttribution(model, method="idg").attribute(
        ids, targets, baselines=0, attention_mask=mask, steps=400, coarse_steps=10)
    rel = fine.delta.abs() / fine.info["output_delta"].abs()
    assert rel.max() < 2e-2


def test_left_ig_per_target_equals_left_ig_on_each_prefix():
    model = gpt2()
    ids, mask = prompts()
    targets = torch.tensor([[3, 17, 21], [6, 6, 40]])
    r = pathattr.SequenceAttribution(model, method="left-ig").attribute(
        ids, targets, baselines=0, attention_mask=mask, steps=24, saturation=0.7)
    ref, ref_delta, infos = per_token_input(model, r, pathattr.LeftIntegratedGradients,
                                            steps=24, saturation=0.7)
    torch.testing.assert_close(r.scores, ref, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(r.delta, ref_delta, rtol=1e-9, atol=1e-12)
    cuts = torch.stack([i["saturation_alpha"] for i in infos], 1)
    torch.testing.assert_close(r.info["saturation_alpha"], cuts, rtol=1e-12, atol=1e-12)
    # saturation 1 is IG with the same rule
    whole = pathattr.SequenceAttribution(model, method="left-ig").attribute(
        ids, targets, baselines=0, attention_mask=mask, steps=24, saturation=1.0)
    ig = pathattr.SequenceAttribution(model).attribute(ids, targets, baselines=0,
                                                       attention_mask=mask, steps=24)
    torch.testing.assert_close(whole.scores, ig.scores, rtol=1e-12, atol=1e-14)


def test_auto_steps_per_target_equal_adaptive_ig_on_each_prefix():
    model = gpt2()
    ids, mask = prompts()
    targets = torch.tensor([[3, 17, 21], [6, 6, 40]])
    r = pathattr.SequenceAttribution(model).attribute(
        ids, targets, baselines=0, attention_mask=mask, steps="auto", tol=1e-3)
    ref, _, infos = per_token_input(model, r, pathattr.IntegratedGradients, steps="auto",
                                    tol=1e-3)
    torch.testing.assert_close(r.scores, ref, rtol=1e-9, atol=1e-12)
    evals = torch.stack([torch.as_tensor(i["gradient_evaluations"]) for i in infos], 1)
    assert torch.equal(r.info["gradient_evaluations"], evals.to(r.info[
        "gradient_evaluations"].dtype))
    assert r.info["converged"].all()
    assert (r.delta.abs() <= 1e-3 * r.info["output_delta"].abs() + 1e-12).all()
    # shared points: fewer forwards than the targets' nodes together
    assert (r.info["points"] < r.info["gradient_evaluations"].sum(1)).all()


@pytest.mark.parametrize("build, embed", [(gpt2, "transformer.wte"),
                                          (llama, "model.embed_tokens")])
def test_mlp_conductance_per_target_equals_layer_conductance_on_each_prefix(build, embed):
    model = build()
    ids, mask = prompts()
    targets = torch.tensor([[3, 17], [6, 40]])
    layers = pathattr.mlp_neurons(model)
    assert len(layers) == 2
    r = pathattr.SequenceAttribution(model).attribute(
        ids, targets, baselines=0, attention_mask=mask, steps=12, conductance_layers=layers)
    seq, m = r.input_ids, r.attention_mask
    pos = (m.cumsum(1) - 1).clamp(min=0)
    for name in layers:
        got = r.conductance[name]
        assert got.shape[:3] == (2, 2, 7)
        for t in range(2):
            end = 5 + t

            def pick(logits, ex, t=t, end=end):
                return logits[torch.arange(len(ex)), end - 1, targets[ex, t]]

            ref = pathattr.LayerConductance(model, name, path_layer=embed).attribute(
                seq[:, :end], 0, pick, steps=12, attribute_to_layer_input=True,
                forward_kwargs={"attention_mask": m[:, :end], "position_ids": pos[:, :end]})
            torch.testing.assert_close(got[:, t, :end], ref.attributions, rtol=1e-9,
                                       atol=1e-12)
            assert got[:, t, end:].abs().max() == 0  # causal
    # the IG scores of the same pass are unchanged by the taps
    plain = pathattr.SequenceAttribution(model).attribute(ids, targets, baselines=0,
                                                          attention_mask=mask, steps=12)
    torch.testing.assert_close(r.scores, plain.scores, rtol=1e-12, atol=1e-14)


def test_method_options_are_checked():
    model = gpt2()
    ids = torch.tensor([[5, 9, 13]])
    with pytest.raises(ValueError, match="conductance_layers needs a method on a shared pass"):
        pathattr.SequenceAttribution(model, method="idg").attribute(
            ids, max_new_tokens=1, conductance_layers=["transformer.h.0.mlp.c_proj"])
    with pytest.raises(ValueError, match="saturation must be"):
        pathattr.SequenceAttribution(model, method="left-ig").attribute(
            ids, max_new_tokens=1, saturation=0)
    with pytest.raises(ValueError, match="saturation must be"):  # checked when constructed
        pathattr.SequenceAttribution(model, method="left-ig", saturation=2)
    with pytest.raises(ValueError, match="'ig' has no option 'saturation'; its options: "
                                         "steps, rule, tol, max_steps"):
        pathattr.SequenceAttribution(model, method="ig", saturation=0.5)
    with pytest.raises(ValueError, match="'deeplift' takes no options"):
        pathattr.SequenceAttribution(model, method="deeplift", steps=3)
    # a method without an error-controlled rule takes steps="auto" as its default count
    auto = pathattr.SequenceAttribution(model, method="left-ig").attribute(
        ids, torch.tensor([[7, 2]]), steps="auto")
    fixed = pathattr.SequenceAttribution(model, method="left-ig").attribute(
        ids, torch.tensor([[7, 2]]), steps=50)
    torch.testing.assert_close(auto.scores, fixed.scores, rtol=0, atol=0)
    with pytest.raises(ValueError, match="no MLP output projection"):
        pathattr.mlp_neurons(torch.nn.Linear(2, 2))


def test_encoder_decoder_methods_on_both_stacks():
    model = t5()
    ids = torch.tensor([[5, 9, 13, 2], [7, 11, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    targets = torch.tensor([[3, 17, 21], [6, 6, 30]])
    ig = pathattr.SequenceAttribution(model).attribute(ids, targets, attention_mask=mask,
                                                       steps=16)
    whole = pathattr.SequenceAttribution(model, method="left-ig").attribute(
        ids, targets, attention_mask=mask, steps=16, saturation=1.0)
    torch.testing.assert_close(whole.scores, ig.scores, rtol=1e-12, atol=1e-14)
    auto = pathattr.SequenceAttribution(model).attribute(ids, targets, attention_mask=mask,
                                                         steps="auto", tol=1e-3)
    assert (auto.delta.abs() <= 1e-3 * auto.info["output_delta"].abs() + 1e-12).all()
    layers = pathattr.mlp_neurons(model)  # the encoder's MLP, then the decoder's
    assert [n.split(".")[0] for n in layers] == ["encoder", "decoder"]
    r = pathattr.SequenceAttribution(model).attribute(
        ids, targets, attention_mask=mask, steps=16, conductance_layers=layers)
    dec = r.conductance[layers[1]]
    assert dec.shape[:3] == (2, 3, 3)
    for t in range(2):  # the decoder's neurons after target t's input carry nothing for it
        assert dec[:, t, t + 1:].abs().max() == 0
    assert r.conductance[layers[0]][1, :, 2:].abs().max() < 1e-12  # encoder padding


@pytest.mark.parametrize("build", [gpt2, t5])
@pytest.mark.parametrize("score", ["logit", "logprob", "prob"])
def test_closed_form_head_gradient_equals_autograds(build, score, monkeypatch):
    from pathattr.methods.sequence.head import _Head

    model = build()
    ids = torch.tensor([[5, 9, 13, 2], [7, 11, 3, 1]])
    targets = torch.tensor([[3, 17, 21], [6, 6, 30]])
    foil = torch.tensor([[1, 2, 4], [8, 9, 10]])
    used = []
    rowwise = _Head.rowwise
    monkeypatch.setattr(_Head, "rowwise",
                        lambda self, *a: used.append(1) or rowwise(self, *a))
    sa = pathattr.SequenceAttribution(model)
    fast = sa.attribute(ids, targets, baselines=0, score=score, foil_ids=foil, steps=8)
    assert used  # the head's gradient came in closed form
    monkeypatch.setattr(_Head, "read", lambda self, logits: False)
    plain = sa.attribute(ids, targets, baselines=0, score=score, foil_ids=foil, steps=8)
    torch.testing.assert_close(fast.scores, plain.scores, rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(fast.delta, plain.delta, rtol=1e-10, atol=1e-13)


def test_speech_encoder_decoder_is_refused_with_the_route_that_works():
    # Whisper's input is audio features: the constructor used to take encoder.conv1 for the
    # token embeddings and fail later with an AttributeError. Its named route: IG on the
    # features with the decoder ids as a forward argument, complete against plain forwards.
    import transformers as T

    torch.manual_seed(0)
    cfg = T.WhisperConfig(vocab_size=40, d_model=16, encoder_layers=1, decoder_layers=1,
                          encoder_attention_heads=4, decoder_attention_heads=4,
                          encoder_ffn_dim=24, decoder_ffn_dim=24, num_mel_bins=8,
                          max_source_positions=8, max_target_positions=20, pad_token_id=0,
                          decoder_start_token_id=1, bos_token_id=1, eos_token_id=2,
                          suppress_tokens=None, begin_suppress_tokens=None)
    model = T.WhisperForConditionalGeneration(cfg).double().eval()
    with pytest.raises(TypeError, match="input_features.*decoder_input_ids"):
        pathattr.SequenceAttribution(model)
    feats = torch.randn(2, 8, 16, dtype=torch.double)
    dec = torch.tensor([[1, 5, 7]] * 2)
    r = pathattr.IntegratedGradients(model).attribute(
        feats, torch.zeros_like(feats), target=(2, 9), steps=64,
        forward_kwargs={"decoder_input_ids": dec}, output="logits")
    with torch.no_grad():
        f = [model(input_features=t, decoder_input_ids=dec).logits[:, 2, 9]
             for t in (feats, torch.zeros_like(feats))]
    torch.testing.assert_close(r.delta, r.attributions.flatten(1).sum(1) - (f[0] - f[1]))
    assert (r.delta.abs() < 1e-3 * (f[0] - f[1]).abs().max()).all()


def test_idgi_per_target_equals_idgi_on_each_prefix_and_is_complete():
    model = gpt2()
    ids, mask = prompts()
    targets = torch.tensor([[3, 17, 21], [6, 6, 40]])
    r = pathattr.SequenceAttribution(model, method="idgi").attribute(
        ids, targets, baselines=0, attention_mask=mask, steps=12)
    ref, ref_delta, _ = per_token_input(model, r, pathattr.IDGI, steps=12)
    torch.testing.assert_close(r.scores, ref, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(r.delta, ref_delta, rtol=0, atol=1e-12)
    assert r.delta.abs().max() < 1e-12 and r.alphas.shape == (12,)
    # encoder-decoder: both stacks share each target's change; complete to rounding
    t = pathattr.SequenceAttribution(t5(), method="idgi").attribute(
        torch.tensor([[5, 9, 13, 2]]), torch.tensor([[3, 17]]), steps=8)
    assert t.scores.shape == (1, 2, 6) and t.delta.abs().max() < 1e-12


def test_the_old_method_spelling_warns():
    model = gpt2()
    with pytest.warns(DeprecationWarning, match="'input_x_gradient' is deprecated"):
        sa = pathattr.SequenceAttribution(model, method="input_x_gradient")
    assert sa.method == "input-x-gradient"


class _SeqFirstLM(nn.Module):
    """A causal GRU LM that embeds sequence-first, ``(L, B, d)``, or batch-first."""

    def __init__(self, seq_first: bool, vocab: int = 20, d: int = 8):
        super().__init__()
        self.seq_first = seq_first
        self.embed, self.rnn = nn.Embedding(vocab, d), nn.GRU(d, d, batch_first=not seq_first)
        self.head = nn.Linear(d, vocab)

    def get_input_embeddings(self):
        return self.embed

    def forward(self, input_ids, attention_mask=None):
        if self.seq_first:
            return self.head(self.rnn(self.embed(input_ids.T))[0]).transpose(0, 1)
        return self.head(self.rnn(self.embed(input_ids))[0])


@pytest.mark.parametrize("method", ["ig", "deeplift"])
def test_a_sequence_first_embedding_is_declared_with_batch_dim(method):
    torch.manual_seed(0)
    first = _SeqFirstLM(True).double().eval()
    twin = _SeqFirstLM(False).double().eval()
    twin.load_state_dict(first.state_dict())
    ids, targets = torch.tensor([[3, 4, 5, 6], [7, 8, 9, 10]]), torch.tensor([[1, 2], [3, 4]])
    got = pathattr.SequenceAttribution(first, method, batch_dim=1).attribute(
        ids, target_ids=targets, steps=50)
    want = pathattr.SequenceAttribution(twin, method).attribute(ids, target_ids=targets,
                                                                steps=50)
    torch.testing.assert_close(got.scores, want.scores, rtol=1e-9, atol=1e-12)
    assert got.delta.abs().max() < 1e-9
    if method == "ig":
        with pytest.raises(ValueError, match=r"changed shape between runs.*batch_dim=1"):
            pathattr.SequenceAttribution(first, method).attribute(ids, target_ids=targets)
