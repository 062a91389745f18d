"""Atom and bond maps drawn with RDKit."""

import io

import numpy as np
import pytest
import torch

pytest.importorskip("rdkit")

from PIL import Image  # noqa: E402

from pathattr.viz.molecules import bond_scores, molecule_png  # noqa: E402


def test_atoms_are_painted_by_sign():
    png = molecule_png("CCCCCCO", [1.0, 0, 0, 0, 0, 0, -1.0], size=(300, 200))
    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    assert img.shape == (200, 300, 3)
    red = (img[..., 0] > img[..., 2] + 60).sum()
    blue = (img[..., 2] > img[..., 0] + 60).sum()
    assert red > 50 and blue > 50  # one red atom, one blue atom
    plain = molecule_png("CCCCCCO", [0.0] * 7, size=(300, 200))
    img0 = np.asarray(Image.open(io.BytesIO(plain)).convert("RGB")).astype(int)
    assert (img0[..., 0] > img0[..., 2] + 60).sum() == 0


def test_bond_scores_pair_the_two_directions_and_sizes_are_checked():
    assert bond_scores(torch.zeros(2, 4), torch.tensor([1.0, 2.0, 3.0, 4.0]), 2).tolist() == \
        [3.0, 7.0]
    with pytest.raises(ValueError, match="expected 4 directed edges"):
        bond_scores(torch.zeros(2, 4), torch.ones(3), 2)
    with pytest.raises(ValueError, match="atom_scores: expected 3 atoms, got 2"):
        molecule_png("CCO", [1.0, 2.0])
    with pytest.raises(ValueError, match="bond_values: expected 2 bonds"):
        molecule_png("CCO", [1.0, 2.0, 3.0], [1.0])
    with pytest.raises(ValueError, match="finite"):
        molecule_png("CCO", [1.0, float("nan"), 3.0])
