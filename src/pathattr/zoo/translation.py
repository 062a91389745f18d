"""A pretrained Chinese-to-English translator as an encoder-decoder ``SequenceAttribution``
explains: ``cn2en`` (MIT; a GRU encoder and GRU decoder, 4.6 M parameters, trained by its
author, weights and vocabularies in its wheel).

``Cn2En`` runs cn2en's own modules — encoder embedding and GRU, decoder embedding, ReLU, GRU and
output layer, loaded from its ``model.pth`` — over a batch of padded sentences at once, in the
interface of a HuggingFace encoder-decoder: ``forward(input_ids, attention_mask,
decoder_input_ids) -> logits (B, T, vocabulary)`` (before cn2en's log-softmax), ``config``
with ``is_encoder_decoder`` and the start and pad ids, ``get_encoder()``/``get_decoder()``
with their embeddings. Each embedding gains one row of zeros, the id ``PAD``: the IG paper's
baseline for translation (zero embeddings), and the padding of a batch, which the encoder
skips (its state is carried over padded positions). Greedy translation equals cn2en's own
``Model.translate``.

cn2en's wheel declares an invalid requirement, so pip refuses it: ``tools/install_cn2en.py``
(run by ``make``) installs it. Its vocabularies are pickled ``Lang`` objects; they are read
with an unpickler that builds only that class's plain data.
"""

from __future__ import annotations

import importlib.util
import pickle
from functools import cache
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import Tensor, nn

SOS, EOS = 0, 1
HIDDEN = 256


class _Lang:
    """cn2en's vocabulary record (``word2index``, ``index2word``, ``n_words``)."""

    word2index: dict[str, int]
    index2word: dict[int, str]
    n_words: int


class _LangUnpickler(pickle.Unpickler):
    """Unpickles cn2en's ``Lang`` records and nothing else (no other class, no callable)."""

    def find_class(self, module: str, name: str):
        if name == "Lang":
            return _Lang
        raise pickle.UnpicklingError(f"cn2en vocabulary: refusing to load {module}.{name}")


def _package() -> Path:
    spec = importlib.util.find_spec("cn2en")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the translation model needs cn2en: run python tools/install_cn2en.py "
                          "(its wheel's metadata is invalid, so pip refuses it)")
    return Path(list(spec.submodule_search_locations)[0])


def _lang(path: Path) -> _Lang:
    with path.open("rb") as f:
        lang = _LangUnpickler(f).load()
    if not isinstance(lang, _Lang) or not isinstance(getattr(lang, "word2index", None), dict):
        raise ValueError(f"{path}: not a cn2en vocabulary")
    return lang


def normalize(sentence: str) -> str:
    """cn2en's normalisation: lower case, every character but Latin letters, quotes and spaces
    set apart by spaces (so each Chinese character is a word)."""
    keep = "abcdefghijklmnopqrstuvwxyz'\" "
    return "".join(c if c in keep else f" {c} " for c in sentence.lower().strip()).strip()


class _Stack(nn.Module):
    """One side's modules, so that each has its own ``get_input_embeddings``."""

    def __init__(self, embedding: nn.Embedding, gru: nn.GRU, out: nn.Linear | None = None):
        super().__init__()
        self.embedding, self.gru = embedding, gru
        self.out = out if out is not None else nn.Identity()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embedding


def _padded(embedding: nn.Embedding) -> nn.Embedding:
    """``embedding`` with one more row, of zeros (id ``num_embeddings``)."""
    w = embedding.weight.detach()
    return nn.Embedding.from_pretrained(torch.cat([w, w.new_zeros(1, w.shape[1])]),
                                        freeze=False)


class Cn2En(nn.Module):
    """cn2en as a batched encoder-decoder (see the module docstring)."""

    main_input_name = "input_ids"

    def __init__(self):
        super().__init__()
        root = _package()
        self.source, self.target = _lang(root / "input_lang.pkl"), _lang(root / "output_lang.pkl")
        state = torch.load(root / "model.pth", map_location="cpu", weights_only=True)
        enc_emb = nn.Embedding(self.source.n_words, HIDDEN)
        dec_emb = nn.Embedding(self.target.n_words, HIDDEN)
        enc_gru, dec_gru = nn.GRU(HIDDEN, HIDDEN), nn.GRU(HIDDEN, HIDDEN)
        out = nn.Linear(HIDDEN, self.target.n_words)
        enc_emb.load_state_dict({"weight": state["encoder"]["embedding.weight"]})
        enc_gru.load_state_dict({k[4:]: v for k, v in state["encoder"].items()
                                 if k.startswith("gru.")})
        dec_emb.load_state_dict({"weight": state["decoder"]["embedding.weight"]})
        dec_gru.load_state_dict({k[4:]: v for k, v in state["decoder"].items()
                                 if k.startswith("gru.")})
        out.load_state_dict({k[4:]: v for k, v in state["decoder"].items()
                             if k.startswith("out.")})
        self.encoder = _Stack(_padded(enc_emb), enc_gru)
        self.decoder = _Stack(_padded(dec_emb), dec_gru, out)
        #: the zero-embedding id of each side (the same number would differ per vocabulary)
        self.source_pad, self.target_pad = self.source.n_words, self.target.n_words
        self.config = SimpleNamespace(is_encoder_decoder=True, decoder_start_token_id=SOS,
                                      eos_token_id=EOS, pad_token_id=None)

    def get_encoder(self) -> _Stack:
        return self.encoder

    def get_decoder(self) -> _Stack:
        return self.decoder

    def get_input_embeddings(self) -> nn.Embedding:
        return self.encoder.embedding

    def encode(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """The encoder's last state ``(1, B, HIDDEN)``; padded positions leave it as it was."""
        e = self.encoder.embedding(input_ids)
        h = e.new_zeros(1, len(input_ids), HIDDEN)
        for t in range(input_ids.shape[1]):
            _, new = self.encoder.gru(e[:, t][None], h)
            h = new if attention_mask is None else \
                torch.where(attention_mask[:, t, None].bool(), new, h)
        return h

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                decoder_input_ids: Tensor | None = None) -> Tensor:
        """Logits ``(B, T, target vocabulary)`` of each decoder position (teacher forcing)."""
        if decoder_input_ids is None:
            raise ValueError("decoder_input_ids: cn2en computes teacher-forced logits and needs "
                             "the decoder's input ids (B, T)")
        h = self.encode(input_ids, attention_mask)
        d = self.decoder.embedding(decoder_input_ids).relu()
        logits = []
        for t in range(decoder_input_ids.shape[1]):
            o, h = self.decoder.gru(d[:, t][None], h)
            logits.append(self.decoder.out(o[0]))
        return torch.stack(logits, 1)

    # -- text --------------------------------------------------------------------------

    def source_ids(self, sentence: str) -> list[int]:
        """cn2en's encoder input: the known words of the normalised sentence, then EOS."""
        w2i = self.source.word2index
        return [w2i[w] for w in normalize(sentence).split(" ") if w and w in w2i] + [EOS]

    def target_ids(self, text: str) -> list[int]:
        """An English text as target ids (known words only; no EOS)."""
        w2i = self.target.word2index
        return [w2i[w] for w in normalize(text).split(" ") if w and w in w2i]

    def source_tokens(self, ids: list[int]) -> list[str]:
        return [_word(self.source, i) for i in ids]

    def target_tokens(self, ids: list[int]) -> list[str]:
        return [_word(self.target, i) for i in ids]

    @torch.no_grad()
    def translate_ids(self, ids: list[int], max_tokens: int = 64) -> list[int]:
        """Greedy decoding until EOS (not included) or ``max_tokens``, as cn2en's own."""
        h = self.encode(torch.tensor([ids]))
        tok, out = torch.tensor([[SOS]]), []
        for _ in range(max_tokens):
            o, h = self.decoder.gru(self.decoder.embedding(tok).relu()[:, 0][None], h)
            nxt = int(self.decoder.out(o[0]).argmax(-1))
            if nxt == EOS:
                break
            out.append(nxt)
            tok = torch.tensor([[nxt]])
        return out

    def baselines(self, n_source: int, n_targets: int) -> Tensor:
        """The zero-embedding baseline ``(1, n_source + n_targets)`` for ``SequenceAttribution``:
        every encoder position, then every decoder position, at its side's ``PAD``."""
        return torch.tensor([[self.source_pad] * n_source + [self.target_pad] * n_targets])

    def translate(self, sentence: str, max_tokens: int = 64) -> str:
        return " ".join(self.target_tokens(self.translate_ids(self.source_ids(sentence),
                                                              max_tokens))).strip()


def _word(lang: _Lang, i: int) -> str:
    return "<zero>" if i == lang.n_words else lang.index2word.get(i, f"<{i}>")


@cache
def _model() -> Cn2En:
    return Cn2En().eval()


def cn2en() -> Cn2En:
    """The translator in eval mode (loaded once per process, about a second)."""
    return _model()

