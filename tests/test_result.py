"""result.py: the one result type, and the two views on it methods' users call."""

import pytest
import torch

from pathattr.result import Attribution


def test_neuron_totals_and_relative_delta():
    a = torch.arange(2 * 3 * 2 * 2, dtype=torch.float64).reshape(2, 3, 2, 2)
    r = Attribution(a, torch.tensor([1.0, -2.0], dtype=torch.float64),
                    info={"output_delta": torch.tensor([4.0, 0.0], dtype=torch.float64)})
    torch.testing.assert_close(r.neuron_totals(), a.flatten(2).sum(-1))
    assert r.neuron_totals("none") is a
    flat = Attribution(torch.ones(2, 5))
    assert flat.neuron_totals().shape == (2, 5)
    rel = r.relative_delta()
    assert rel[0] == 0.25 and torch.isfinite(rel).all() and rel[1] > 1e300  # no 0/0 NaN
    torch.testing.assert_close(r.relative_delta(torch.tensor([2.0, 4.0], dtype=torch.float64)),
                               torch.tensor([0.5, 0.5], dtype=torch.float64))
    with pytest.raises(ValueError, match="reduce"):
        r.neuron_totals("mean")
    with pytest.raises(ValueError, match="no completeness gap"):
        Attribution(a).relative_delta()
