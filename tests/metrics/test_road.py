"""ROAD: the imputation against a direct dense solve of its definition, exact on linear
images, and MoRF / LeRF ordering on a model whose evidence is known."""

import numpy as np
import pytest
import torch
from torch import nn

from pathattr import metrics
from pathattr.metrics.road import FRACTIONS, NEIGHBOURS


def dense_imputation(img: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """The linear system written out pixel by pixel and solved densely."""
    c, h, w = img.shape
    unknown = [(r, q) for r in range(h) for q in range(w) if removed[r, q]]
    idx = {p: i for i, p in enumerate(unknown)}
    a = np.zeros((len(unknown), len(unknown)))
    rhs = np.zeros((len(unknown), c))
    for i, (r, q) in enumerate(unknown):
        for dr, dq, wt in NEIGHBOURS:
            rr, qq = r + dr, q + dq
            if not (0 <= rr < h and 0 <= qq < w):
                continue
            a[i, i] += wt
            if removed[rr, qq]:
                a[i, idx[(rr, qq)]] -= wt
            else:
                rhs[i] += wt * img[:, rr, qq]
    out = img.copy()
    sol = np.linalg.solve(a, rhs)
    for i, (r, q) in enumerate(unknown):
        out[:, r, q] = sol[i]
    return out


def test_imputation_solves_its_linear_system():
    g = np.random.default_rng(0)
    img = g.normal(size=(3, 6, 7))
    removed = g.random((6, 7)) < 0.5
    got = metrics.impute(torch.tensor(img), torch.tensor(removed))
    np.testing.assert_allclose(got.numpy(), dense_imputation(img, removed), rtol=1e-10,
                               atol=1e-12)
    assert np.array_equal(got.numpy()[:, ~removed], img[:, ~removed])  # kept pixels kept
    # noise lands on the imputed pixels only, with the requested spread
    noisy = metrics.impute(torch.tensor(img), torch.tensor(removed), noise=0.5,
                           generator=torch.Generator().manual_seed(1))
    diff = (noisy - got).numpy()
    assert np.all(diff[:, ~removed] == 0) and 0.2 < diff[:, removed].std() < 0.8


def test_interior_holes_of_a_linear_image_are_filled_exactly():
    rows, cols = np.mgrid[0:9, 0:9]
    img = np.stack([2.0 * rows - 0.5 * cols + 1, -rows + 3.0 * cols])
    removed = np.zeros((9, 9), bool)
    removed[2:5, 3:7] = removed[6, 6] = True  # away from the border: symmetric stencils
    got = metrics.impute(torch.tensor(img), torch.tensor(removed)).numpy()
    np.testing.assert_allclose(got, img, rtol=0, atol=1e-12)


def test_everything_removed_is_refused():
    with pytest.raises(ValueError, match="every pixel is removed"):
        metrics.impute(torch.zeros(1, 3, 3), torch.ones(3, 3, dtype=torch.bool))


class Spot(nn.Module):
    """Class 1's logit is the brightness of a central spot; class 0's is constant."""

    def __init__(self, size: int):
        super().__init__()
        self.weight = torch.zeros(size, size)
        self.weight[size // 2 - 2:size // 2 + 2, size // 2 - 2:size // 2 + 2] = 1.0

    def forward(self, x):
        s = (x.mean(1) * self.weight).sum((1, 2)) / self.weight.sum() * 6
        return torch.stack([torch.zeros_like(s) + 3, s], 1)


def test_morf_falls_and_lerf_holds_where_the_evidence_is_known():
    size = 16
    model = Spot(size).eval()
    x = torch.zeros(2, 3, size, size)
    x[:, :, 6:10, 6:10] = 1.0
    x[1] *= 0.9
    attr = model.weight.expand(2, 1, size, size) + 0.01 * torch.rand(2, 1, size, size)
    morf = metrics.road(model, x, attr, target=1, order="morf", noise=0.0)
    lerf = metrics.road(model, x, attr, target=1, order="lerf", noise=0.0)
    rand = metrics.road(model, x, attr, target=1, order="morf", ranking="random", noise=0.0)
    assert morf.scores.shape == (2, 10)
    assert torch.equal(morf.fractions, torch.tensor(FRACTIONS, dtype=torch.float32))
    # removing the 16 spot pixels first (6 % of 256) kills the evidence: imputed from zeros
    assert (morf.scores[:, 1] < 0.1).all() and (morf.scores[:, 0] > 0.9).all()
    # removing the background first leaves the spot, and the imputed background is black
    assert (lerf.scores[:, :9] > 0.9).all()
    assert (morf.auc < rand.auc).all() and (rand.auc < lerf.auc).all()


def test_bad_arguments():
    model = Spot(8).eval()
    x = torch.rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match="order must be"):
        metrics.road(model, x, x, order="both")
    with pytest.raises(ValueError, match="fractions must be sorted numbers in"):
        metrics.road(model, x, x, fractions=(0.5, 1.0))
    with pytest.raises(ValueError, match="attributions has shape"):
        metrics.road(model, x, x[:, :, :4])
