"""targets.py: every target form Captum users write, resolved to one scalar per row."""

import pytest
import torch

from pathattr.targets import resolve_target, select

OUT = torch.arange(24.0).reshape(2, 3, 4)  # (B, L, V) logits


def test_every_form_selects_the_same_as_indexing_by_hand():
    out2 = OUT[:, 0]  # (B, V)
    assert select(out2, 2).tolist() == [2.0, 14.0]
    assert select(out2, [1, 3]).tolist() == [1.0, 15.0]
    assert select(out2, torch.tensor([1, 3])).tolist() == [1.0, 15.0]
    assert select(out2, torch.tensor([[3]])).tolist() == [3.0, 15.0]  # one row: for all
    assert select(OUT, (2, 1)).tolist() == [OUT[0, 2, 1], OUT[1, 2, 1]]
    assert select(OUT, [(0, 0), (2, 3)]).tolist() == [OUT[0, 0, 0], OUT[1, 2, 3]]
    assert select(out2, lambda o: o.sum(1)).tolist() == out2.sum(1).tolist()
    assert select(out2, lambda o, ex: o[torch.arange(len(o)), ex]).tolist() == [0.0, 13.0]
    assert select(torch.tensor([[5.0], [6.0]]), None).tolist() == [5.0, 6.0]


def test_rows_repeat_the_examples():
    t = resolve_target([1, 3], 2)
    out = torch.arange(16.0).reshape(4, 4)  # rows k * B + b for two baselines
    assert t.select(out, torch.arange(4)).tolist() == [1.0, 7.0, 9.0, 15.0]
    assert t.classes.tolist() == [1, 3]


@pytest.mark.parametrize("bad, error, message", [
    (True, TypeError, "bool"), (1.5, TypeError, "integer"), ([1, 2, 3], ValueError, "3 entries"),
    ((0, "a"), TypeError, "tuple"), (torch.zeros(2, 2, 2, dtype=torch.long), ValueError, "(B,)"),
    ("cat", TypeError, "target must"),
])
def test_bad_targets_are_named(bad, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve_target(bad, 2)


def test_out_of_range_and_wrong_shape_callables_are_named():
    with pytest.raises((IndexError, ValueError), match="target"):
        select(OUT[:, 0], 9)
    with pytest.raises(ValueError, match="one scalar per row"):
        select(OUT[:, 0], lambda o: o)
