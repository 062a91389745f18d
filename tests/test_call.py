"""call.py: the prepared call every method shares — rows k * B + b, dtype and device,
packing, the baselines' expansion and the result's assembly."""

import pytest
import torch
from torch import nn

from pathattr.baselines import Several
from pathattr.call import setup
from pathattr.integrate import flat_points, rule_tensors


class Two(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(5, 2).double()

    def forward(self, a, b):
        return self.lin(torch.cat([a.flatten(1), b], 1))


def test_rows_pair_example_b_with_baseline_k_in_the_models_dtype():
    a, b = torch.randn(3, 1, 3), torch.randn(3, 2)  # float32 inputs, float64 model
    refs = (Several(torch.randn(2, 1, 3)), Several(torch.randn(2, 2)))
    s = setup(Two(), (a, b), refs, target=1)
    assert (s.k, s.b) == (2, 3) and s.x.dtype == torch.float64 and s.x.shape == (6, 5)
    assert a.dtype == torch.float32  # the user's tensors are not touched
    for k in range(2):
        for e in range(3):
            row = k * 3 + e
            torch.testing.assert_close(s.x[row], torch.cat([a[e].flatten(), b[e]]).double())
            torch.testing.assert_close(s.baseline[row], torch.cat(
                [refs[0].baselines[k].flatten(), refs[1].baselines[k]]).double())
    got = s.structure(s.x[:3])
    assert isinstance(got, tuple) and got[0].shape == (3, 1, 3) and got[1].shape == (3, 2)
    per_row = torch.arange(6.0, dtype=torch.float64)
    assert s.mean(per_row).tolist() == [1.5, 2.5, 3.5]  # the mean over the two baselines
    assert s.evaluations(7).tolist() == [14, 14, 14]
    assert s.evaluations([1, 2, 3, 4, 5, 6]).tolist() == [5, 7, 9]


def test_points_and_rules():
    rows, alphas = flat_points(2, torch.tensor([0.25, 0.75]))
    assert rows.tolist() == [0, 0, 1, 1] and alphas.tolist() == [0.25, 0.75, 0.25, 0.75]
    a, w = rule_tensors("riemann_middle", 4, torch.zeros(1, dtype=torch.float64))
    assert a.dtype == torch.float64 and a.tolist() == [0.125, 0.375, 0.625, 0.875]
    a, _ = rule_tensors("riemann_left", 2, torch.zeros(1, dtype=torch.long))
    assert a.dtype == torch.get_default_dtype()  # ids: the default floating dtype


def test_inputs_are_checked_by_name():
    model = nn.Linear(3, 1)
    with pytest.raises(ValueError, match="x\\[1\\] has batch size 1, but x\\[0\\] has 2"):
        setup(model, (torch.randn(2, 3), torch.randn(1, 3)))
    with pytest.raises(TypeError, match="floating-point"):
        setup(model, torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="no features"):
        setup(model, torch.ones(2, 0))
    with pytest.raises(ValueError, match="a tuple of 1"):
        setup(model, (torch.randn(2, 3), torch.randn(2, 3)), (None,))
