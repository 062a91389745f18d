"""LayerIG on a BERT-shaped classifier (4 layers, hidden 256, built from a config) with an
attention mask: pathattr vs Captum, interleaved, at each library's defaults and at equal chunks;
time and peak memory (each in a fresh process).

Run: ``python -m benchmarks bert [out_dir]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

import pathattr
from benchmarks.common import interleaved, median, peak_rss_mb, write

EMB = "bert.embeddings.word_embeddings"
STEPS = 50
CHUNK = 64


def workload():
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    cfg = BertConfig(hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                     intermediate_size=1024, num_labels=2)
    model = BertForSequenceClassification(cfg).eval()
    ids = torch.randint(1000, 30000, (4, 32))
    mask = torch.ones_like(ids)
    mask[2:, 20:] = 0  # two sentences padded after 20 tokens
    return model, ids, mask


def contestants(model, ids, mask) -> dict:
    from captum.attr import LayerIntegratedGradients as CaptumLIG

    ours = pathattr.LayerIntegratedGradients(model, EMB)
    theirs = CaptumLIG(lambda i, a: model(i, attention_mask=a).logits,
                       model.bert.embeddings.word_embeddings)

    def run_ours(bs):
        return ours.attribute(ids, 0, target=1, steps=STEPS, batch_size=bs,
                              forward_kwargs={"attention_mask": mask}).attributions

    def run_theirs(bs):
        return theirs.attribute(ids, torch.zeros_like(ids), target=1, n_steps=STEPS,
                                additional_forward_args=(mask,), internal_batch_size=bs)

    return {"pathattr default": lambda: run_ours("auto"),
            "captum default": lambda: run_theirs(None),
            f"pathattr chunk {CHUNK}": lambda: run_ours(CHUNK),
            f"captum chunk {CHUNK}": lambda: run_theirs(CHUNK)}


def run(out_dir: Path = Path("results/bench"), reps: int = 5) -> dict:
    """Writes ``bert.json`` and ``bert.md`` to ``out_dir``."""
    torch.set_num_threads(2)
    model, ids, mask = workload()
    fns = contestants(model, ids, mask)
    times = interleaved(fns, reps)
    med = {k: median(v) for k, v in times.items()}
    mem = {k: peak_rss_mb("benchmarks.bench_bert", k) for k in med}
    diff = (fns[f"pathattr chunk {CHUNK}"]() - fns[f"captum chunk {CHUNK}"]()).abs().max()
    lines = [f"# LayerIG, BERT 4 x 256 with an attention mask, {len(ids)} x {ids.shape[1]} "
             f"tokens, {STEPS} Gauss-Legendre steps (median of {reps}, interleaved)", "",
             "| contestant | seconds | spread | vs captum (same setting) | peak extra RSS MiB |",
             "|---|---:|---|---:|---:|"]
    for k in fns:
        other = k.replace("pathattr", "captum")
        ratio = f"{med[k] / med[other]:.2f}" if k.startswith("pathattr") else ""
        lines.append(f"| {k} | {med[k]:.3f} | {min(times[k]):.3f}-{max(times[k]):.3f} | "
                     f"{ratio} | {mem[k]:.0f} |")
    lines += ["", f"Largest difference from Captum's attributions: {diff:.1e}."]
    data = {"times": times, "median": med, "peak_rss_mb": mem, "max_abs_diff": float(diff),
            "steps": STEPS}
    write(out_dir, "bert", data, "\n".join(lines) + "\n")
    return data


if __name__ == "__main__":
    run(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("results/bench"))
