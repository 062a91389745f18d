"""Data sets for ``pathattr run`` / ``evaluate --data``: the packaged held-out sets by name."""

import numpy as np
import pytest
import torch

from pathattr import datasets
from pathattr.datasets import Dataset, data_id, decode


def test_packaged_digits_are_the_held_out_split_with_labels(tmp_path, monkeypatch):
    from pathattr.zoo import digits_data

    monkeypatch.chdir(tmp_path)
    d = Dataset("digits")
    _, _, x, y = digits_data()
    assert d.keys == [str(i) for i in range(359)]
    (raw,) = d.read(["7"])
    assert raw.label == int(y[7])
    torch.testing.assert_close(decode(raw, lambda img: None), x[7])
    assert data_id("digits") == "digits"  # recorded by name, so a resumed run finds it


def test_a_path_of_that_name_wins_over_the_packaged_set(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.savez(tmp_path / "digits", x=np.zeros((2, 1, 8, 8), np.float32))  # writes digits.npz
    (tmp_path / "digits.npz").rename(tmp_path / "digits")
    assert Dataset("digits").keys == ["0", "1"]
    assert data_id("digits") == str((tmp_path / "digits").resolve())
    with pytest.raises(FileNotFoundError, match="nor one of the packaged sets digits, mnist1d"):
        Dataset("nothing-here")
    assert set(datasets.PACKAGED) == {"digits", "mnist1d"}
