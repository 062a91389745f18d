"""Long prompts, where users run out of memory: ``SequenceAttribution`` (IG with 32
Gauss-Legendre steps, and DeepLIFT) against Captum's ``LLMGradientAttribution(
LayerIntegratedGradients)`` and Inseq's ``integrated_gradients`` (same steps), 8 target tokens
after prompts of 128-1024 tokens, on a GPT-2-shaped model (768 wide, 12 heads) and a
Llama-shaped one with grouped-query attention (768 wide, 12 query heads, 4 key-value heads),
4 layers each (12 would take an hour per table on two cores; memory per layer is the same),
random weights, MiniLM's 30,522-piece vocabulary.

Scores: the target's log-probability (pathattr, Captum: its only score) or logit (Inseq: it has
no log-probability step function); the memory and cost of one backward are the same.

Each cell runs in a fresh process: its wall time and its peak resident memory above the loaded
model (``VmHWM``). A cell that runs past ``LIMIT`` seconds is stopped and shown as such.

Run: ``python -m benchmarks long [out_dir]`` (about 35 minutes on two cores).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import torch

STEPS = 32
TARGETS = 8
LENGTHS = (128, 256, 512, 1024)
LIMIT = 240
#: (model, tool, method) cells; Inseq and Captum run IG only
CELLS = [(m, tool, meth) for m in ("gpt2", "llama")
         for tool, meth in (("pathattr", "ig"), ("pathattr", "deeplift"), ("captum", "ig"),
                            ("inseq", "ig"))
         if not (m == "llama" and tool == "inseq")]


def build(kind: str, tok) -> torch.nn.Module:
    import transformers as T

    torch.manual_seed(0)
    v = tok.vocab_size
    if kind == "gpt2":
        cfg = T.GPT2Config(vocab_size=v, n_embd=768, n_layer=4, n_head=12, n_positions=1100,
                           pad_token_id=0, bos_token_id=tok.bos_token_id,
                           eos_token_id=tok.eos_token_id)
        return T.GPT2LMHeadModel(cfg).eval()
    cfg = T.LlamaConfig(vocab_size=v, hidden_size=768, intermediate_size=2048,
                        num_hidden_layers=4, num_attention_heads=12, num_key_value_heads=4,
                        max_position_embeddings=1100, pad_token_id=0,
                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    return T.LlamaForCausalLM(cfg).eval()


def ids(tok, n: int) -> torch.Tensor:
    """``n`` word pieces of the benchmark text repeated (whole words: Inseq's text round trip
    gives back the same ids)."""
    from benchmarks.bench_sequence import TEXT

    one = tok(TEXT)["input_ids"]
    return torch.tensor([(one * (n // len(one) + 1))[:n]])


def cell(kind: str, tool: str, method: str, length: int) -> dict:
    """In this process: one call, its seconds and peak extra RSS (MiB)."""
    from benchmarks.bench_sequence import plain_tokenizer
    from benchmarks.common import rss_mb

    torch.set_num_threads(2)
    tok = plain_tokenizer()
    model = build(kind, tok)
    seq = ids(tok, length + TARGETS)
    prompt, target = seq[:, :length], seq[:, length:]
    unk = tok.unk_token_id
    if tool == "pathattr":
        import pathattr

        sa = pathattr.SequenceAttribution(model, method=method)
        base = torch.full((1, length + TARGETS), unk)

        def run():
            return sa.attribute(prompt, target, baselines=base, score="logprob",
                                steps=STEPS).scores
    elif tool == "captum":
        from captum.attr import LayerIntegratedGradients, LLMGradientAttribution, TextTokenInput

        llm = LLMGradientAttribution(LayerIntegratedGradients(
            model, model.get_input_embeddings()), tok)
        inp = TextTokenInput(tok.decode(prompt[0]), tok, baselines=unk)

        def run():
            return llm.attribute(inp, target[0], n_steps=STEPS, method="gausslegendre").token_attr
    else:
        import inseq

        im = inseq.load_model(model, "integrated_gradients", tokenizer=tok)
        text, gen = tok.decode(prompt[0]), tok.decode(seq[0])

        def run():
            return im.attribute(text, gen, n_steps=STEPS, attributed_fn="logit",
                                show_progress=False).sequence_attributions[0]
    before = rss_mb()
    t = time.perf_counter()
    run()
    return {"seconds": time.perf_counter() - t, "peak_mb": rss_mb() - before}


def run(out_dir: Path = Path("results/bench")) -> dict:
    """Writes ``long.json`` and ``long.md`` to ``out_dir``."""
    from benchmarks.common import write

    results: dict[str, dict] = {}
    for kind, tool, method in CELLS:
        for length in LENGTHS:
            key = f"{kind} {tool} {method} L={length}"
            code = (f"import json; from benchmarks.bench_long import cell; "
                    f"print(json.dumps(cell({kind!r}, {tool!r}, {method!r}, {length})))")
            try:
                out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                                     text=True, timeout=LIMIT)
                results[key] = json.loads(out.stdout.strip().splitlines()[-1]) \
                    if out.returncode == 0 else {"error": out.stderr.strip()[-300:]}
            except subprocess.TimeoutExpired:
                results[key] = {"error": f"over {LIMIT} s"}
            print(key, results[key], flush=True)
    lines = [f"# {TARGETS} target tokens after long prompts: seconds and peak extra RSS (MiB), "
             f"IG {STEPS} Gauss-Legendre steps", "",
             "4 layers x 768 (GPT-2 12 heads; Llama 12 query / 4 key-value heads), random "
             "weights, one fresh process per cell, 2 threads.", "",
             "| model, tool, method | " + " | ".join(f"L={n}" for n in LENGTHS) + " |",
             "|---|" + "---:|" * len(LENGTHS)]
    for kind, tool, method in CELLS:
        row = []
        for n in LENGTHS:
            r = results[f"{kind} {tool} {method} L={n}"]
            row.append(f"{r['seconds']:.0f} s, {r['peak_mb']:.0f} MiB" if "seconds" in r
                       else "did not finish" if "over" in r["error"] else "failed")
        lines.append(f"| {kind} {tool} {method} | " + " | ".join(row) + " |")
    write(out_dir, "long", {"results": results, "steps": STEPS, "targets": TARGETS},
          "\n".join(lines) + "\n")
    return results


if __name__ == "__main__":
    run(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("results/bench"))
