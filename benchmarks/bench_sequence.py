"""SequenceAttribution against Captum's LLMGradientAttribution(LayerIntegratedGradients): T
target tokens after a 64-token prompt on a GPT-2-shaped model (4 layers, hidden 256, from a
config), same steps and rule, log-probability score; interleaved timing, peak memory in a
fresh process; and 4 prompts in one call against 4 calls.

Captum's convention differs in one respect: it keeps the earlier target tokens fixed at their
real embeddings (context, not attributed), where pathattr moves them along the path too. The
same convention in pathattr is a baseline equal to the targets at the target positions, which
this benchmark passes, so that both compute the same numbers (checked).

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
#: 48 tokens with the MiniLM tokenizer
TEXT = ("the quick brown fox jumps over the lazy dog while the cat sleeps on a warm sofa near "
        "the window and the rain falls softly on the old town square where children play "
        "games and merchants sell fresh bread fruit and flowers to passing travellers today")


def workload():
    from transformers import GPT2Config, GPT2LMHeadModel

    from pathattr.zoo.text import minilm

    tokenizer, _ = minilm()
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=tokenizer.vocab_size, n_embd=256, n_layer=4, n_head=4,
                     n_positions=128)
    model = GPT2LMHeadModel(cfg).eval()
    ids = tokenizer(TEXT, return_tensors="pt")["input_ids"][:, :64]
    return model, tokenizer, ids


def contestants(model, tokenizer, ids) -> dict:
    from captum.attr import LayerIntegratedGradients, LLMGradientAttribution, TextTokenInput

    text = tokenizer.decode(ids[0], skip_special_tokens=True)
    inp = TextTokenInput(text, tokenizer)
    prompt = inp.to_model_input()  # the ids (to_tensor() is Captum's feature mask)
    sa = pathattr.SequenceAttribution(model)
    llm = LLMGradientAttribution(LayerIntegratedGradients(model, model.transformer.wte),
                                 tokenizer)
    gen = torch.Generator().manual_seed(1)
    fns = {}
    for t in TARGETS:
        target = torch.randint(1000, tokenizer.vocab_size, (t,), generator=gen)
        base = torch.cat([torch.zeros_like(prompt), target[None]], 1)  # Captum's convention
        fns[f"pathattr T={t}"] = lambda t=target, base=base: sa.attribute(
            prompt, t[None], baselines=base, score="logprob", steps=STEPS).scores
        fns[f"captum T={t}"] = lambda t=target: llm.attribute(
            inp, t, n_steps=STEPS, method="gausslegendre").token_attr
    four = prompt.repeat(4, 1)
    target = torch.randint(1000, tokenizer.vocab_size, (4, 8), generator=gen)
    fns["pathattr 4 prompts, one call"] = lambda: sa.attribute(
        four, target, baselines=0, score="logprob", steps=STEPS).scores
    fns["pathattr 4 prompts, 4 calls"] = lambda: [sa.attribute(
        four[i:i + 1], target[i:i + 1], baselines=0, score="logprob", steps=STEPS).scores
        for i in range(4)]
    return fns


def check() -> dict[int, float]:
    """Largest difference from Captum's token attributions, relative to their largest."""
    torch.set_num_threads(2)
    fns = contestants(*workload())
    diffs = {}
    for t in TARGETS:
        ours, theirs = fns[f"pathattr T={t}"](), fns[f"captum T={t}"]()
        p = theirs.shape[1]
        diffs[t] = float((ours[0, :, :p] - theirs.to(ours)).abs().max() / theirs.abs().max())
    return diffs


def run(out_dir: Path = Path("results/bench"), reps: int = 3) -> dict:
    """Writes ``sequence.json`` and ``sequence.md`` to ``out_dir``."""
    torch.set_num_threads(2)
    model, tokenizer, ids = workload()
    fns = contestants(model, tokenizer, ids)
    diffs = check()
    times = interleaved(fns, reps)
    med = {k: median(v) for k, v in times.items()}
    mem = {k: peak_rss_mb("benchmarks.bench_sequence", k) for k in med}
    lines = [f"# Every target token after a {ids.shape[1]}-token prompt, GPT-2 4 x 256, "
             f"{STEPS} Gauss-Legendre steps, log-probability (median of {reps}, interleaved)",
             "", "| contestant | seconds | spread | speed-up | peak extra RSS MiB |",
             "|---|---:|---|---:|---:|"]
    for k in fns:
        if k.startswith("captum"):
            ratio = ""
        elif "prompts" in k:
            ratio = f"{med['pathattr 4 prompts, 4 calls'] / med[k]:.2f}x vs 4 calls"
        else:
            ratio = f"{med[k.replace('pathattr', 'captum')] / med[k]:.2f}x vs captum"
        lines.append(f"| {k} | {med[k]:.2f} | {min(times[k]):.2f}-{max(times[k]):.2f} | "
                     f"{ratio} | {mem[k]:.0f} |")
    lines += ["", "Largest difference from Captum's token attributions, relative to their "
              "largest: " + ", ".join(f"T={t}: {d:.1e}" for t, d in diffs.items()) + "."]
    data = {"times": times, "median": med, "peak_rss_mb": mem, "relative_difference": diffs,
            "steps": STEPS, "prompt_tokens": int(ids.shape[1])}
    write(out_dir, "sequence", data, "\n".join(lines) + "\n")
    return data


if __name__ == "__main__":
    run(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("results/bench"))
