"""A tiny character-level GPT-2 trained on the Zen of Python, deterministically, and cached.

No pretrained generative model installs offline from a package, so pathattr trains one on text
that ships with every Python (``this``, PEP 20) the first time it is needed (14 s on a quiet
core), like the digits CNN. It has learnt its 19 lines well enough to continue "In the face of"
with " ambiguity, refuse the" and "Simple is" with " better than complicat...": a real model
whose next-token predictions have reasons to explain (which earlier characters make it write
"than").
"""

from __future__ import annotations

import codecs
import contextlib
import io
import sys
from pathlib import Path

import torch
from torch import Tensor, nn
from tqdm import tqdm

from . import cache
from .cache import cached_state, deterministic

#: Everything the trained weights depend on; its hash names the cache file.
SETTINGS = {"arch": "gpt2-char/d64-l2-h4/v1", "seed": 0, "steps": 600, "batch": 32,
            "window": 32, "lr": 5e-3, "torch": torch.__version__.split("+")[0]}


def zen() -> str:
    """The Zen of Python, as ``import this`` prints it (without printing it)."""
    with contextlib.redirect_stdout(io.StringIO()):
        import this
    return codecs.decode(this.s, "rot13")


class CharTokenizer:
    """Characters of the training text to ids and back; id 0 is padding (``pad_token_id``).
    ``__call__`` raises ``ValueError`` naming characters the model never saw."""

    pad_token_id = 0

    def __init__(self, text: str):
        self.chars = sorted(set(text))
        self.ids = {c: i + 1 for i, c in enumerate(self.chars)}

    def __len__(self) -> int:
        return len(self.chars) + 1

    def __call__(self, text: str) -> list[int]:
        unknown = sorted({c for c in text if c not in self.ids})
        if unknown:
            raise ValueError(f"characters the model never saw: {''.join(unknown)!r}")
        return [self.ids[c] for c in text]

    def tokens(self, ids: list[int]) -> list[str]:
        """One string per id (padding as ``""``)."""
        return ["" if i == 0 else self.chars[i - 1] for i in ids]

    def decode(self, ids: list[int]) -> str:
        return "".join(self.tokens(ids))


def build_tiny_lm(vocab_size: int) -> nn.Module:
    """The untrained ``transformers.GPT2LMHeadModel``: 2 layers, 4 heads, width 64."""
    import transformers

    config = transformers.GPT2Config(vocab_size=vocab_size, n_positions=256, n_embd=64,
                                     n_layer=2, n_head=4, bos_token_id=0, eos_token_id=0,
                                     pad_token_id=0)
    return transformers.GPT2LMHeadModel(config)


def train_tiny_lm(progress: bool = True) -> dict[str, Tensor]:
    """Train from scratch with ``SETTINGS`` on random windows of the text; returns the state
    dict. Seeded, one thread (``cache.deterministic``). ``progress``: a bar on stderr (when
    it is a terminal). Cost: 14 s on a quiet CPU core, up to ~45 s on a loaded machine."""
    text = zen()
    tokenizer = CharTokenizer(text)
    data = torch.tensor(tokenizer(text))
    w = SETTINGS["window"]
    with deterministic(SETTINGS["seed"]):
        model = build_tiny_lm(len(tokenizer))
        opt = torch.optim.AdamW(model.parameters(), lr=SETTINGS["lr"])
        g = torch.Generator().manual_seed(SETTINGS["seed"])
        for _ in tqdm(range(SETTINGS["steps"]), desc="training tiny-lm (once; cached)",
                      unit="step", file=sys.stderr, leave=False,
                      disable=None if progress else True):
            start = torch.randint(0, len(data) - w, (SETTINGS["batch"],), generator=g)
            batch = torch.stack([data[s:s + w] for s in start.tolist()])
            loss = model(batch, labels=batch).loss  # the model shifts the labels
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.state_dict()


def weights_path(directory: str | Path | None = None) -> Path:
    """Where the trained weights are cached (the name carries a hash of ``SETTINGS``)."""
    return cache.weights_path("tiny_lm", SETTINGS, directory)


def tiny_lm(directory: str | Path | None = None, progress: bool = True
            ) -> tuple[CharTokenizer, nn.Module]:
    """``(tokenizer, model)``: the trained character-level GPT-2 in eval mode (cached weights,
    or trained once, with a progress bar unless ``progress=False``). Its token embeddings
    are ``transformer.wte``."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # "loss_type=None" and similar notices are noise here
    tokenizer = CharTokenizer(zen())
    model = build_tiny_lm(len(tokenizer))
    model.load_state_dict(cached_state(weights_path(directory),
                                       lambda: train_tiny_lm(progress)))
    return tokenizer, model.eval()
