"""LayerIG on a BERT-shaped classifier (4 layers, hidden 256, from a config) with an attention
mask: pathattr vs Captum, interleaved in one process, at defaults and at equal chunks.

Run: ``python -m benchmarks.bench_bert``. Prints one line per contestant (median of 3 reps).
"""

from __future__ import annotations

import statistics
import time

import torch
from captum import attr as ca
from transformers import BertConfig, BertForSequenceClassification

import pathattr

EMB = "bert.embeddings.word_embeddings"


def main(reps: int = 3) -> dict[str, float]:
    torch.manual_seed(0)
    cfg = BertConfig(hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                     intermediate_size=1024, num_labels=2)
    model = BertForSequenceClassification(cfg).eval()
    ids = torch.randint(1000, 30000, (4, 32))
    mask = torch.ones_like(ids)
    mask[2:, 20:] = 0
    ours = pathattr.LayerIntegratedGradients(model, EMB)
    theirs = ca.LayerIntegratedGradients(lambda i, a: model(i, attention_mask=a).logits,
                                         model.bert.embeddings.word_embeddings)

    def run_ours(bs):
        return ours.attribute(ids, 0, target=1, steps=50, batch_size=bs,
                              forward_kwargs={"attention_mask": mask}).attributions

    def run_theirs(bs):
        return theirs.attribute(ids, torch.zeros_like(ids), target=1, n_steps=50,
                                additional_forward_args=(mask,), internal_batch_size=bs)

    contestants = {"pathattr (defaults)": lambda: run_ours("auto"),
                   "captum (defaults)": lambda: run_theirs(None),
                   "pathattr (chunks of 64)": lambda: run_ours(64),
                   "captum (chunks of 64)": lambda: run_theirs(64)}
    times: dict[str, list[float]] = {k: [] for k in contestants}
    for _ in range(reps):
        for name, fn in contestants.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    diff = (run_ours(64) - run_theirs(64)).abs().max().item()
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in med.items():
        print(f"{k}: {v:.3f} s  (reps {', '.join(f'{t:.3f}' for t in times[k])})")
    print(f"max |pathattr - captum| = {diff:.2e}")
    return med


if __name__ == "__main__":
    main()
