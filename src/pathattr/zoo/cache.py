"""Weights that pathattr trains itself (the digits CNN, the tiny language model), cached."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor


def cache_dir() -> Path:
    """``$PATHATTR_CACHE`` if set, else ``~/.cache/pathattr``."""
    return Path(os.environ.get("PATHATTR_CACHE") or Path.home() / ".cache" / "pathattr")


def settings_key(settings: dict) -> str:
    """A short hash of everything trained weights depend on: it names their cache file."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def cached_state(path: Path, train: Callable[[], dict[str, Tensor]]) -> dict[str, Tensor]:
    """The state dict at ``path`` (``torch.load(weights_only=True)``), or ``train()``'s, written
    there atomically so that concurrent callers never read a partial file."""
    if path.exists():
        return torch.load(path, map_location="cpu", weights_only=True)
    state = train()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return state
