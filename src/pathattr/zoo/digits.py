"""A small CNN on scikit-learn's 8x8 handwritten digits, trained deterministically and cached."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from . import cache
from .cache import cached_state, train_classifier

#: Everything the trained weights depend on; its hash names the cache file.
SETTINGS = {"arch": "conv16-conv32-pool-fc64-fc10/v1", "seed": 0, "test_fraction": 0.2,
            "epochs": 5, "batch": 32, "lr": 3e-3, "torch": torch.__version__.split("+")[0]}


def digits_data() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(x_train, y_train, x_test, y_test)``: inputs ``(n, 1, 8, 8)`` float32 in [0, 1],
    labels long. A fixed seeded split, 20 % held out (1438 / 359 images).
    """
    from sklearn.datasets import load_digits

    d: Any = load_digits()  # a Bunch; its stubs say tuple too
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target, dtype=torch.long)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(SETTINGS["seed"]))
    n_test = round(len(y) * SETTINGS["test_fraction"])
    test, train = perm[:n_test], perm[n_test:]
    return x[train], y[train], x[test], y[test]


def build_digits_cnn() -> nn.Module:
    """The untrained architecture. Layers: ``features.conv1``, ``features.relu1``,
    ``features.conv2`` (32 channels, 8x8), ``features.relu2``, ``features.pool``,
    ``classifier.flatten``, ``classifier.fc1`` (64 units), ``classifier.relu3``,
    ``classifier.fc2`` (10 logits).
    """
    features = nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(1, 16, 3, padding=1), relu1=nn.ReLU(),
        conv2=nn.Conv2d(16, 32, 3, padding=1), relu2=nn.ReLU(),
        pool=nn.MaxPool2d(2)))
    classifier = nn.Sequential(OrderedDict(
        flatten=nn.Flatten(), fc1=nn.Linear(32 * 4 * 4, 64), relu3=nn.ReLU(),
        fc2=nn.Linear(64, 10)))
    return nn.Sequential(OrderedDict(features=features, classifier=classifier))


def train_digits_cnn() -> dict[str, Tensor]:
    """Train from scratch with ``SETTINGS``; returns the state dict. Cost: about 1 s on CPU.

    Deterministic: seeded init and shuffling, one thread (``cache.deterministic``).
    """
    x, y, _, _ = digits_data()
    return train_classifier(build_digits_cnn, x, y, SETTINGS)


def weights_path(directory: str | Path | None = None) -> Path:
    """Where the trained weights are cached (the name carries a hash of ``SETTINGS``)."""
    return cache.weights_path("digits_cnn", SETTINGS, directory)


def digits_cnn(directory: str | Path | None = None) -> nn.Module:
    """The trained digits CNN in eval mode (98 % held-out accuracy); logits ``(B, 10)``.

    Loads cached weights (``torch.load(weights_only=True)``) or trains once (about 1 s) and
    writes the cache atomically, so concurrent callers never read a partial file.
    """
    model = build_digits_cnn()
    model.load_state_dict(cached_state(weights_path(directory), train_digits_cnn))
    return model.eval()
