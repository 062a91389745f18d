import pytest
import torch

from pathattr import metrics
from pathattr.result import Attribution


def test_relative_gap_per_example():
    r = Attribution(torch.zeros(2, 3), delta=torch.tensor([0.1, -0.2]),
                    info={"output_delta": torch.tensor([1.0, -4.0])})
    assert torch.allclose(metrics.completeness(r), torch.tensor([0.1, 0.05]))


def test_missing_pieces_are_named():
    with pytest.raises(ValueError, match="delta is None"):
        metrics.completeness(Attribution(torch.zeros(1, 2)))
    with pytest.raises(ValueError, match="output_delta"):
        metrics.completeness(Attribution(torch.zeros(1, 2), delta=torch.zeros(1)))
    with pytest.raises(TypeError, match="Attribution"):
        metrics.completeness(torch.zeros(2))
