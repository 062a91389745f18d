"""The MNIST-1D data and the seeded 1-D CNN trained on it (trained once, then cached)."""

import random

import numpy as np
import torch

from pathattr.zoo import mnist1d


def test_data_is_the_standard_split_and_leaves_the_global_rngs_alone():
    state = random.getstate(), np.random.get_state()
    x, y, xt, yt = mnist1d.mnist1d_data()
    assert random.getstate() == state[0]
    assert all(np.array_equal(a, b) for a, b in zip(np.random.get_state()[1:2], state[1][1:2]))
    assert x.shape == (4000, 1, 40) and xt.shape == (1000, 1, 40)
    assert sorted(set(y.tolist())) == list(range(10)) and yt.dtype == torch.long
    torch.testing.assert_close(mnist1d.mnist1d_data()[2], xt)  # generated the same each time


def test_the_cnn_classifies_held_out_signals():
    model = mnist1d.mnist1d_cnn()
    assert not model.training
    _, _, x, y = mnist1d.mnist1d_data()
    with torch.inference_mode():
        acc = (model(x).argmax(1) == y).double().mean()
    assert acc > 0.85  # chance: 0.1
    assert mnist1d.weights_path().exists()
