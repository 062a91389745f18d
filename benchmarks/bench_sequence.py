"""SequenceAttribution against Captum's per-target LayerIntegratedGradients and Inseq's
integrated gradients: T = 8 and 32 target tokens after a 64-token prompt, on a GPT-2-shaped
model (4 layers, hidden 256) and a T5-shaped one (4 + 4 layers, d_model 256), from configs,
50 Gauss-Legendre steps; interleaved timing, peak memory in a fresh process; 4 prompts in one
call against 4 calls; and ``steps="auto"``: the gradient evaluations per target for a 1 %
completeness gap against the gaps 50 fixed steps leave.

Captum: ``LLMGradientAttribution(LayerIntegratedGradients)`` on GPT-2 (log-probability, its
only score); it supports decoder-only models, so on T5 the same loop by hand: one
``LayerIntegratedGradients`` on the encoder embeddings per target, the decoder prefix given.
Captum keeps the earlier target tokens fixed (context, not attributed); pathattr with the
targets as baseline at their positions computes the same numbers (checked). Inseq: its
``integrated_gradients`` (logit score, the unknown-token baseline, the decoder start token
fixed); pathattr with the same baseline ids computes the same numbers (checked).

Inseq is a benchmark-only dependency (``make bench-deps``); without it its rows are skipped.

Run: ``python -m benchmarks sequence [out_dir]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

import pathattr
from benchmarks.common import interleaved, median, peak_rss_mb, write

STEPS = 50
TARGETS = (8, 32)
PROMPT = 64
#: more than 64 + 32 word pieces with the MiniLM vocabulary; targets are the pieces after
#: the prompt, so that Inseq's text round trip gives back the same ids
TEXT = ("the quick brown fox jumps over the lazy dog while the cat sleeps on a warm sofa near "
        "the window and the rain falls softly on the old town square where children play "
        "games and merchants sell fresh bread fruit and flowers to passing travellers today "
        "as the bells of the church ring out across the valley and the river runs quietly "
        "past the mill towards the sea under a grey and heavy sky that promises more rain "
        "before the evening comes and the lamps are lit one by one along the narrow streets "
        "of the little harbour town")


def plain_tokenizer():
    """MiniLM's WordPiece vocabulary with no special tokens added (Inseq decodes and
    re-encodes the texts; [CLS] / [SEP] would not survive that)."""
    import tokenizers
    import transformers

    from pathattr.zoo.text import minilm

    base, _ = minilm()
    tk = tokenizers.Tokenizer.from_str(base.backend_tokenizer.to_str())
    tk.post_processor = tokenizers.processors.TemplateProcessing(single="$A", pair="$A $B")
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tk, bos_token="[CLS]", eos_token="[SEP]", pad_token="[PAD]",
        unk_token="[UNK]")


def workload():
    import transformers

    tok = plain_tokenizer()
    v = tok.vocab_size
    torch.manual_seed(0)
    gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=v, n_embd=256, n_layer=4, n_head=4, n_positions=128, pad_token_id=0,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)).eval()
    t5 = transformers.T5ForConditionalGeneration(transformers.T5Config(
        vocab_size=v, d_model=256, d_ff=1024, d_kv=64, num_layers=4, num_heads=4,
        decoder_start_token_id=0, pad_token_id=0, eos_token_id=tok.eos_token_id)).eval()
    # a decoder embedding of its own (same weights), so that Captum can hook the encoder's
    t5.decoder.set_input_embeddings(torch.nn.Embedding.from_pretrained(
        t5.shared.weight.detach().clone(), freeze=False))
    ids = torch.tensor([tok(TEXT)["input_ids"]])
    assert ids.shape[1] >= PROMPT + max(TARGETS)
    return {"gpt2": gpt2, "t5": t5}, tok, ids[:, :PROMPT], ids[:, PROMPT:]


def inseq_baselines(kind: str, n_prompt: int, n_targets: int, unk: int) -> torch.Tensor:
    """Inseq's reference ids: the unknown token everywhere but the decoder's start token."""
    base = torch.full((1, n_prompt + n_targets), unk)
    if kind == "t5":
        base[0, n_prompt] = 0
    return base


def contestants(models, tok, prompt, follow) -> dict:
    from captum.attr import LayerIntegratedGradients, LLMGradientAttribution, TextTokenInput

    try:
        import inseq
    except ImportError:
        inseq = None
    text = tok.decode(prompt[0])
    four = prompt.repeat(4, 1)
    fns = {}
    for kind, model in models.items():
        sa = pathattr.SequenceAttribution(model)
        if inseq is not None:
            im = inseq.load_model(model, "integrated_gradients", tokenizer=tok)
        if kind == "gpt2":
            llm = LLMGradientAttribution(LayerIntegratedGradients(model, model.transformer.wte),
                                         tok)
            inp = TextTokenInput(text, tok)
        for t in TARGETS:
            target = follow[:, :t]
            base = inseq_baselines(kind, prompt.shape[1], t, tok.unk_token_id)
            fns[f"{kind} pathattr T={t}"] = lambda sa=sa, target=target, base=base: \
                sa.attribute(prompt, target, baselines=base, score="logit", steps=STEPS).scores
            if kind == "gpt2":
                fns[f"{kind} captum T={t}"] = lambda target=target, llm=llm, inp=inp: \
                    llm.attribute(inp, target[0], n_steps=STEPS,
                                  method="gausslegendre").token_attr
            else:
                fns[f"{kind} captum T={t}"] = lambda model=model, target=target: \
                    captum_seq2seq(model, prompt, target, tok.unk_token_id)
            if inseq is not None:
                gen = tok.decode(target[0]) if kind == "t5" else tok.decode(
                    torch.cat([prompt, target], 1)[0])
                fns[f"{kind} inseq T={t}"] = lambda im=im, gen=gen, kind=kind: im.attribute(
                    text, gen, n_steps=STEPS, attributed_fn="logit", show_progress=False,
                    attribute_target=kind == "t5").sequence_attributions[0]
        target = torch.cat([follow[:, i:i + 8] for i in range(4)])  # 4 different targets
        fns[f"{kind} 4 prompts, one call"] = lambda sa=sa, target=target: sa.attribute(
            four, target, baselines=0, score="logit", steps=STEPS).scores
        fns[f"{kind} 4 prompts, 4 calls"] = lambda sa=sa, target=target: [sa.attribute(
            four[i:i + 1], target[i:i + 1], baselines=0, score="logit", steps=STEPS).scores
            for i in range(4)]
    return fns


def captum_seq2seq(model, prompt, target, unk: int) -> torch.Tensor:
    """Captum's per-target loop on an encoder-decoder: ``(T, E)`` encoder attributions of each
    target's logit, the decoder prefix (start token, earlier targets) given."""
    from captum.attr import LayerIntegratedGradients

    dec = torch.cat([torch.zeros_like(target[:, :1]), target[:, :-1]], 1)

    def last_logits(enc, dec):
        return model(input_ids=enc, decoder_input_ids=dec).logits[:, -1]

    lig = LayerIntegratedGradients(last_logits, model.encoder.embed_tokens)
    rows = [lig.attribute(prompt, torch.full_like(prompt, unk), target=int(target[0, t]),
                          additional_forward_args=(dec[:, :t + 1],), n_steps=STEPS,
                          method="gausslegendre").sum(-1)[0]
            for t in range(target.shape[1])]
    return torch.stack(rows)


def check() -> dict[str, float]:
    """Largest difference from Captum's and Inseq's token attributions, relative to their
    largest, with each one's convention in pathattr."""
    torch.set_num_threads(2)
    models, tok, prompt, follow = workload()
    fns = contestants(models, tok, prompt, follow)
    diffs = {}
    p = prompt.shape[1]
    for kind, model in models.items():
        sa = pathattr.SequenceAttribution(model)
        for t in TARGETS:
            target = follow[:, :t]
            # Captum's convention: the earlier targets (and T5's start token) fixed
            fixed = torch.cat([torch.full_like(prompt, tok.unk_token_id if kind == "t5" else 0),
                               target if kind == "gpt2" else torch.cat(
                                   [torch.zeros_like(target[:, :1]), target[:, :-1]], 1)], 1)
            ours = sa.attribute(prompt, target, baselines=fixed, steps=STEPS,
                                score="logprob" if kind == "gpt2" else "logit").scores[0, :, :p]
            theirs = fns[f"{kind} captum T={t}"]().to(ours)
            diffs[f"{kind} captum T={t}"] = float((ours - theirs).abs().max()
                                                  / theirs.abs().max())
            if f"{kind} inseq T={t}" not in fns:
                continue
            ours = fns[f"{kind} pathattr T={t}"]()[0]
            a = fns[f"{kind} inseq T={t}"]()
            dec = a.target_attributions.nan_to_num().sum(-1).T.to(ours)
            theirs = dec[:, -ours.shape[1]:] if kind == "gpt2" else torch.cat(
                [a.source_attributions.nan_to_num().sum(-1).T.to(ours), dec[:, :t]], 1)
            diffs[f"{kind} inseq T={t}"] = float((ours - theirs).abs().max()
                                                 / theirs.abs().max())
    # float32 rounding, amplified where a target's terms cancel, is all that differs
    t5, target = models["t5"].double(), follow[:, :8]
    fixed = torch.cat([torch.full_like(prompt, tok.unk_token_id), torch.zeros_like(target[:, :1]),
                       target[:, :-1]], 1)
    ours = pathattr.SequenceAttribution(t5).attribute(prompt, target, baselines=fixed,
                                                      steps=STEPS).scores[0, :, :p]
    theirs = captum_seq2seq(t5, prompt, target, tok.unk_token_id)
    diffs["t5 captum T=8, float64"] = float((ours - theirs).abs().max() / theirs.abs().max())
    return diffs


def auto_steps() -> dict:
    """With ``steps="auto"`` (tol 1 %), the gradient evaluations per target token and the
    forwards per prompt, against the completeness gaps of 50 fixed Gauss-Legendre steps."""
    import time

    torch.set_num_threads(2)
    models, tok, prompt, follow = workload()
    out = {}
    for kind, model in models.items():
        sa = pathattr.SequenceAttribution(model)
        target = follow[:, :8]
        start = time.perf_counter()
        fixed = sa.attribute(prompt, target, baselines=0, score="logit", steps=STEPS)
        t_fixed = time.perf_counter() - start
        start = time.perf_counter()
        auto = sa.attribute(prompt, target, baselines=0, score="logit", steps="auto", tol=0.01)
        t_auto = time.perf_counter() - start
        rel = lambda r: (r.delta.abs() / r.info["output_delta"].abs())[0]  # noqa: E731
        evals = auto.info["gradient_evaluations"][0].double()
        out[kind] = {"fixed_relative_gap": rel(fixed).tolist(),
                     "auto_relative_gap": rel(auto).tolist(),
                     "auto_evaluations": evals.tolist(),
                     "auto_points": int(auto.info["points"][0]),
                     "converged": bool(auto.info["converged"].all()),
                     "seconds_fixed": t_fixed, "seconds_auto": t_auto}
    return out


def run(out_dir: Path = Path("results/bench"), reps: int = 3) -> dict:
    """Writes ``sequence.json`` and ``sequence.md`` to ``out_dir``."""
    torch.set_num_threads(2)
    data = workload()
    fns = contestants(*data)
    diffs = check()
    auto = auto_steps()
    times = interleaved(fns, reps)
    med = {k: median(v) for k, v in times.items()}
    mem = {k: peak_rss_mb("benchmarks.bench_sequence", k) for k in med}
    lines = [f"# Every target token after a {PROMPT}-token prompt, {STEPS} Gauss-Legendre "
             f"steps (median of {reps}, interleaved)", "",
             "GPT-2 4 x 256 and T5 4 + 4 x 256, random weights, MiniLM's 30,522-piece "
             "vocabulary.", "",
             "| contestant | seconds | spread | speed-up | peak extra RSS MiB |",
             "|---|---:|---|---:|---:|"]
    for k in fns:
        if "pathattr" in k:
            ratio = ", ".join(f"{med[k.replace('pathattr', o)] / med[k]:.2f}x vs {o}"
                              for o in ("captum", "inseq") if k.replace("pathattr", o) in med)
        elif k.endswith("one call"):
            ratio = f"{med[k.replace('one call', '4 calls')] / med[k]:.2f}x vs 4 calls"
        else:
            ratio = ""
        lines.append(f"| {k} | {med[k]:.2f} | {min(times[k]):.2f}-{max(times[k]):.2f} | "
                     f"{ratio} | {mem[k]:.0f} |")
    lines += ["", "Largest difference from the other tool's token attributions (each one's "
              "convention), relative to their largest: "
              + ", ".join(f"{k}: {d:.1e}" for k, d in diffs.items()) + ".", "",
              "| model, T = 8 | gap at 50 steps: median, max | auto (1 %): evaluations per "
              "target, mean, max | forwards per prompt | gap, max | seconds 50 / auto |",
              "|---|---|---|---:|---:|---|"]
    for kind, a in auto.items():
        f, g, e = (torch.tensor(a[k]) for k in ("fixed_relative_gap", "auto_relative_gap",
                                                "auto_evaluations"))
        lines.append(f"| {kind} | {f.median():.2%}, {f.max():.2%} | {e.mean():.0f}, "
                     f"{e.max():.0f} | {a['auto_points']} | {g.max():.2%} | "
                     f"{a['seconds_fixed']:.1f} / {a['seconds_auto']:.1f} |")
    data = {"times": times, "median": med, "peak_rss_mb": mem, "relative_difference": diffs,
            "auto": auto, "steps": STEPS, "prompt_tokens": PROMPT}
    write(out_dir, "sequence", data, "\n".join(lines) + "\n")
    return data


if __name__ == "__main__":
    run(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("results/bench"))
