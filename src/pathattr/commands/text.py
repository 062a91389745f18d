"""Token attributions for the MiniLM sentence encoder: which tokens make a sentence similar to
another (Layer IG on the word embeddings of the cosine-similarity model)."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Literal

import torch

from .. import viz
from ..files import make_dirs, text_folder, write_file
from . import UsageError


def explain_text(text: str, pair: str | None, steps: int | Literal["auto"], out: Path
                 ) -> tuple[list[str], Path]:
    """Attribute ``cos(embed(text), embed(pair))`` to the tokens of ``text`` and, with a pair,
    also to the tokens of ``pair``; without one, ``text`` is compared with its own embedding
    (which tokens carry its meaning). The baseline keeps [CLS] and [SEP] and pads the rest.
    Writes ``report.html`` and ``tokens.json`` to ``out/text/<FOLDER>/``, a folder named
    after the sentences (``files.text_folder``: another pair never replaces these). Returns
    the terminal tables (one per sentence) and the report path. Cost: loading MiniLM (~3 s)
    and ``steps`` forward+backward passes per sentence."""
    for arg, value in (("--text", text), ("--pair", pair)):
        if value is not None and not value.strip():
            raise UsageError(f"{arg}: empty sentence")
    from transformers.utils import logging as hf_logging

    from ..methods.integrated_gradients import LayerIntegratedGradients
    from ..zoo import WORD_EMBEDDINGS, minilm, similarity_model

    hf_logging.disable_progress_bar()  # its weight-loading bar is noise next to ours
    tokenizer, encoder = minilm()
    sides = [(text, pair or text)] + ([(pair, text)] if pair else [])
    fragments, tables, entries = [], [], []
    for sentence, other in sides:
        model = similarity_model(tokenizer, encoder, other)
        ids = tokenizer([sentence], return_tensors="pt", truncation=True)["input_ids"]
        base = ids.clone()
        base[:, 1:-1] = tokenizer.pad_token_id
        result = LayerIntegratedGradients(model, "encoder." + WORD_EMBEDDINGS).attribute(
            ids, baselines=base, steps=steps)
        # [CLS] and [SEP] equal the baseline, so their attribution is zero: not shown.
        tokens = tokenizer.convert_ids_to_tokens(ids[0].tolist())[1:-1]
        scores = result.tensor[0].sum(-1)[1:-1].tolist()
        with torch.inference_mode():
            similarity = float(model(ids)[0])
        assert result.delta is not None  # a path method always reports its gap
        delta, relative = float(result.delta[0]), float(result.relative_delta()[0])
        entries.append({"sentence": sentence, "compared_with": other, "similarity": similarity,
                        "tokens": tokens, "attributions": scores, "delta": delta,
                        "relative_delta": relative})
        head = (f"{sentence!r} vs {other!r}: cosine similarity {similarity:.3f}, "
                f"completeness gap δ = {delta:+.3g} ({relative:.1%})")
        fragments.append(f"<p>{html.escape(head)}</p>" + viz.tokens_html(tokens, scores))
        tables.append(head + "\n" + viz.tokens_table(tokens, scores))
    directory = out / "text" / text_folder(text, *([pair] if pair else []))
    make_dirs(directory)
    write_file(directory / "tokens.json", json.dumps(entries, indent=2) + "\n")
    report = viz.Report(
        title="pathattr: sentence similarity",
        facts=[("model", "MiniLM (all-MiniLM-L6-v2), cosine similarity of mean-pooled "
                         "embeddings"),
               ("method", "Layer IG on the word embeddings"), ("steps", str(steps))],
        tokens_html="\n".join(fragments),
        notes=["Red tokens raise the similarity, blue ones lower it (relative to the sentence "
               "with every token but [CLS] and [SEP] replaced by [PAD])."])
    return tables, report.write(directory / "report.html")
