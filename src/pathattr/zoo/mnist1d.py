"""A small 1-D CNN on MNIST-1D (Greydanus 2020), trained deterministically and cached.

MNIST-1D turns each digit's 1-D template into a 40-sample signal by padding, shear, scaling,
translation and correlated noise; the ``mnist1d`` package (Apache-2.0) generates the standard
set (seed 42: 4000 training, 1000 test signals) offline, in about a second.
"""

from __future__ import annotations

import functools
import random
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from . import cache
from .cache import cached_state, train_classifier

#: Everything the trained weights depend on; its hash names the cache file.
SETTINGS = {"arch": "conv1d32x3-pool-fc64-fc10/v1", "seed": 0, "data_seed": 42, "epochs": 30,
            "batch": 64, "lr": 3e-3, "torch": torch.__version__.split("+")[0]}


def mnist1d_data() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(x_train, y_train, x_test, y_test)``: signals ``(n, 1, 40)`` float32 (the data set's
    standardisation), labels long; the package's own split (4000 / 1000). Cost: about 2 s the
    first time in a process (generated, then kept)."""
    d = _generated()

    def signals(v):
        return torch.tensor(np.asarray(v), dtype=torch.float32).unsqueeze(1)

    return (signals(d["x"]), torch.tensor(d["y"], dtype=torch.long), signals(d["x_test"]),
            torch.tensor(d["y_test"], dtype=torch.long))


@functools.cache
def _generated() -> dict:
    """The data set as ``mnist1d`` makes it; the global ``random`` / ``numpy.random`` states
    its generator seeds are restored afterwards."""
    from mnist1d.data import get_dataset_args, make_dataset

    states = random.getstate(), np.random.get_state()
    try:
        args: Any = get_dataset_args()  # an ObjectView over a dict
        args.seed = SETTINGS["data_seed"]
        return make_dataset(args)
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])


def build_mnist1d_cnn() -> nn.Module:
    """The untrained architecture on ``(B, 1, 40)``. Layers: ``features.conv1`` .. ``conv3``
    (32 channels each), ``features.relu1`` .. ``relu3``, ``features.pool`` (to 20 samples),
    ``classifier.fc1`` (64 units), ``classifier.relu``, ``classifier.fc2`` (10 logits)."""
    features = nn.Sequential(OrderedDict(
        conv1=nn.Conv1d(1, 32, 5, padding=2), relu1=nn.ReLU(),
        conv2=nn.Conv1d(32, 32, 3, padding=1), relu2=nn.ReLU(), pool=nn.MaxPool1d(2),
        conv3=nn.Conv1d(32, 32, 3, padding=1), relu3=nn.ReLU()))
    classifier = nn.Sequential(OrderedDict(
        flatten=nn.Flatten(), fc1=nn.Linear(32 * 20, 64), relu=nn.ReLU(),
        fc2=nn.Linear(64, 10)))
    return nn.Sequential(OrderedDict(features=features, classifier=classifier))


def train_mnist1d_cnn() -> dict[str, Tensor]:
    """Train from scratch with ``SETTINGS`` (Adam, cosine-free constant rate, seeded shuffles,
    one thread); returns the state dict. Cost: about 20 s on one CPU core."""
    x, y, _, _ = mnist1d_data()
    return train_classifier(build_mnist1d_cnn, x, y, SETTINGS)


def weights_path(directory: str | Path | None = None) -> Path:
    """Where the trained weights are cached (the name carries a hash of ``SETTINGS``)."""
    return cache.weights_path("mnist1d_cnn", SETTINGS, directory)


def mnist1d_cnn(directory: str | Path | None = None) -> nn.Module:
    """The trained MNIST-1D CNN in eval mode; logits ``(B, 10)`` for signals ``(B, 1, 40)``.
    Loads the cached weights or trains once (``train_mnist1d_cnn``) and caches them
    atomically."""
    model = build_mnist1d_cnn()
    model.load_state_dict(cached_state(weights_path(directory), train_mnist1d_cnn))
    return model.eval()
