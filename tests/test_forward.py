"""forward.py: how the model is called — packing several inputs, indexing per-example forward
arguments by each path point's example, and choosing the tensor to explain."""

import pytest
import torch
from torch import nn

from pathattr import IntegratedGradients, per_example, shared
from pathattr.forward import ModelCall, Packer, choose_output


def test_packer_round_trips_every_layout():
    a, b = torch.randn(3, 2, 4), torch.randn(3, 5)
    two = Packer.of([a, b], single=False)
    flat = two.pack([a, b])
    assert flat.shape == (3, 2 * 4 + 5) and two.packed
    got = two.structure(flat)
    assert isinstance(got, tuple) and torch.equal(got[0], a) and torch.equal(got[1], b)
    one = Packer.of([a], single=True)  # a single input of 2+ dims travels unchanged
    assert not one.packed and one.pack([a]) is a and one.structure(a) is a
    vec = Packer.of([torch.randn(3)], single=True)  # (B,) is packed as one feature
    assert vec.pack([torch.arange(3.0)]).shape == (3, 1)
    assert torch.equal(vec.structure(vec.pack([torch.arange(3.0)])), torch.arange(3.0))


def test_forward_arguments_follow_each_rows_example():
    seen = {}

    class Model(nn.Module):
        def forward(self, x, scale, mask=None, fixed=None):
            seen.update(scale=scale, mask=mask, fixed=fixed)
            return x * scale[:, None] * mask

    n = 3
    scale, mask, fixed = torch.tensor([1.0, 10.0, 100.0]), torch.ones(n, 2), torch.ones(7)
    call = ModelCall(Model(), Packer.of([torch.zeros(n, 2)], single=True), n,
                     additional_forward_args=(scale,),
                     forward_kwargs={"mask": mask, "fixed": fixed})
    rows = torch.tensor([5, 0, 4])  # rows k * n + b: examples 2, 0, 1
    out = call(torch.ones(3, 2), rows)
    assert seen["scale"].tolist() == [100.0, 1.0, 10.0]
    assert seen["fixed"] is fixed  # not batch-sized: passed unchanged
    assert out[:, 0].tolist() == [100.0, 1.0, 10.0]
    with pytest.raises(TypeError, match="forward_kwargs must be a dict"):
        ModelCall(Model(), call.packer, n, forward_kwargs=[1])


def test_marked_forward_arguments_are_never_guessed_by_shape():
    """A shared (2, E) edge list with a batch of two stays whole; per_example always indexes."""
    class Model(nn.Module):
        def forward(self, x, edges, weight):
            # the output depends on every edge: a split edge list changes it
            return x * edges.float().sum() * weight[:, None]

    n, edges, weight = 2, torch.tensor([[0, 1, 2], [1, 2, 0]]), torch.tensor([1.0, 2.0])
    x = torch.rand(n, 3, dtype=torch.float64)
    model = Model().double()
    res = IntegratedGradients(model).attribute(
        x, target=0, additional_forward_args=(shared(edges), per_example(weight.double())))
    plain = model(x, edges, weight.double())[:, 0]
    assert torch.allclose(res.attributions.sum(1), plain, rtol=1e-12)
    call = ModelCall(Model(), Packer.of([torch.zeros(n, 3)], single=True), n,
                     additional_forward_args=(shared(edges), per_example(weight)))
    seen = []
    call.model = lambda x, e, w: seen.append((e, w)) or x
    call(torch.ones(4, 3), torch.tensor([3, 0, 1, 2]))
    assert seen[0][0] is edges and seen[0][1].tolist() == [2.0, 1.0, 2.0, 1.0]
    with pytest.raises(ValueError, match=r"additional_forward_args\[0\]: per_example\(\) "
                                         r"tensor has 3 entries.*batch size 2"):
        ModelCall(Model(), call.packer, n, additional_forward_args=(per_example(torch.ones(3)),))
    with pytest.raises(TypeError, match="per_example"):
        per_example(3.0)


def test_a_model_failing_says_what_it_was_given():
    call = ModelCall(nn.Linear(4, 2), Packer.of([torch.zeros(1, 3)], single=True), 1)
    with pytest.raises(RuntimeError, match=r"the model failed on what pathattr passed it "
                                           r"\(input 0: tensor \(2, 3\) float32"):
        call(torch.zeros(2, 3))


def test_choose_output():
    t = torch.ones(2)
    assert choose_output(t) is t
    assert choose_output({"logits": t, "h": 2 * t}) is t
    assert torch.equal(choose_output({"logits": t, "h": 2 * t}, "h"), 2 * t)
    assert choose_output((t, 2 * t)) is t and torch.equal(choose_output((t, 2 * t), 1), 2 * t)
    assert torch.equal(choose_output((t,), lambda o: o[0] + 1), t + 1)
    with pytest.raises(KeyError, match="keys"):
        choose_output({"h": t})
    with pytest.raises(IndexError, match="length 1"):
        choose_output((t,), 3)
    with pytest.raises(TypeError, match="not a tensor"):
        choose_output(3)
