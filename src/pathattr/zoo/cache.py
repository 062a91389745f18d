"""Weights that pathattr trains itself (the digits CNN, the tiny language model), cached."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import Tensor

from ..errors import one_line
from ..files import write_atomic


def cache_dir() -> Path:
    """``$PATHATTR_CACHE`` if set, else ``~/.cache/pathattr``."""
    return Path(os.environ.get("PATHATTR_CACHE") or Path.home() / ".cache" / "pathattr")


def weights_path(name: str, settings: dict, directory: str | Path | None = None) -> Path:
    """Where weights trained with ``settings`` are cached: the file name carries a short hash
    of everything they depend on."""
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    return Path(directory or cache_dir()) / f"{name}-{key}.pt"


@contextmanager
def deterministic(seed: int) -> Iterator[None]:
    """Train reproducibly inside: seeded, one thread (CPU reductions can split work by thread
    count); the caller's global RNG state and thread count are restored on exit."""
    threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)


def train_classifier(build: Callable[[], torch.nn.Module], x: Tensor, y: Tensor,
                     settings: dict) -> dict[str, Tensor]:
    """A classifier ``build()`` trained on ``(x, y)`` with Adam (``settings["lr"]``) and
    cross-entropy for ``settings["epochs"]`` epochs of seeded shuffles in batches of
    ``settings["batch"]``, inside ``deterministic(settings["seed"])``; returns the state dict."""
    with deterministic(settings["seed"]):
        model = build()
        opt = torch.optim.Adam(model.parameters(), lr=settings["lr"])
        g = torch.Generator().manual_seed(settings["seed"])
        for _ in range(settings["epochs"]):
            perm = torch.randperm(len(y), generator=g)
            for i in range(0, len(y), settings["batch"]):
                idx = perm[i:i + settings["batch"]]
                loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
    return model.state_dict()


def cached_state(path: Path, train: Callable[[], dict[str, Tensor]]) -> dict[str, Tensor]:
    """The state dict at ``path`` (``torch.load(weights_only=True)``), or ``train()``'s, written
    there atomically so that concurrent callers never read a partial file. A cache file that
    does not load (truncated, edited) is trained again and replaced, with a warning naming it."""
    if path.is_file():
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 -- any unreadable cache is rebuilt
            warnings.warn(f"pathattr: the cached weights {str(path)!r} do not load "
                          f"({one_line(e)}); training them again", stacklevel=2)
    state = train()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda f: torch.save(state, f))
    return state
