import pytest
import torch
from torch import nn

from pathattr.methods.agi import AdversarialGradientIntegration


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 5)).double().eval()


def inputs(seed=1):
    return torch.randn(3, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def test_linear_model_paths_integrate_exactly():
    torch.manual_seed(0)
    model = nn.Linear(6, 5).double().eval()
    t = model(inputs()).argmax(1)  # explain the predicted class, as AGI intends
    r = AdversarialGradientIntegration(model).attribute(inputs(), target=t, steps=20, classes=3)
    # f_i is linear, so every path's left-Riemann sum is exactly f_i(x) - f_i(x_end)
    torch.testing.assert_close(r.delta, torch.zeros(3, dtype=torch.float64), atol=1e-12, rtol=0)
    assert (r.info["steps_taken"] > 0).all()


def test_shape_determinism_and_small_gap():
    model = mlp()
    agi = AdversarialGradientIntegration(model)
    a = agi.attribute(inputs(), target=[0, 1, 2], epsilon=0.01, steps=20, classes=4)
    b = agi.attribute(inputs(), target=[0, 1, 2], epsilon=0.01, steps=20, classes=4)
    assert a.attributions.shape == (3, 6)
    assert torch.equal(a.attributions, b.attributions)
    # each step's left-Riemann error is O(eps^2): a 5x smaller eps over the same number of
    # steps leaves a ~25x smaller gap
    small = agi.attribute(inputs(), target=[0, 1, 2], epsilon=0.002, steps=20, classes=4)
    assert (small.delta.abs() < 0.1 * a.delta.abs()).all()
    assert a.info["classes"].shape == (3, 4)
    assert not (a.info["classes"] == torch.tensor([0, 1, 2])[:, None]).any()


def test_paths_stop_at_the_adversarial_class():
    model = mlp()
    x = inputs()
    r = AdversarialGradientIntegration(model).attribute(x, target=[0, 1, 2], epsilon=0.5, steps=50,
                                                        classes=[3, 4])
    taken = r.info["steps_taken"]
    assert (taken < 50).any()
    # replay the stopped paths: after their steps the model predicts the adversarial class
    for b in range(3):
        for c, cls in enumerate([3, 4]):
            if taken[b, c] == 50:
                continue
            p = x[b:b + 1].clone()
            for _ in range(int(taken[b, c])):
                p.requires_grad_(True)
                (g,) = torch.autograd.grad(model(p)[0, cls], p)
                p = (p + 0.5 * g.sign()).detach()
            assert model(p).argmax(1).item() == cls


def test_a_class_equal_to_the_target_is_skipped():
    model = mlp()
    r = AdversarialGradientIntegration(model).attribute(inputs(), target=[0, 1, 2], classes=[0, 3])
    assert r.info["steps_taken"][0, 0] == 0 and r.info["path_output_drop"].isfinite().all()


@pytest.mark.parametrize("kw, err", [({"target": None}, TypeError),
                                     ({"target": 0, "classes": 0}, ValueError),
                                     ({"target": 0, "classes": 5}, ValueError),
                                     ({"target": 0, "classes": [7]}, ValueError),
                                     ({"target": 0, "epsilon": -1}, ValueError)])
def test_bad_arguments(kw, err):
    with pytest.raises(err):
        AdversarialGradientIntegration(mlp()).attribute(inputs(), **kw)


def test_paths_walked_in_groups_equal_one_group(monkeypatch):
    # memory holds a group of paths, not batch x classes copies of the input
    import pathattr.methods.agi as agi

    x, model = inputs(), mlp()
    whole = AdversarialGradientIntegration(model).attribute(x, target=0, classes=2, steps=5,
                                                            batch_size=64)
    monkeypatch.setattr(agi, "PATHS_PER_CHUNK", 1)
    grouped = AdversarialGradientIntegration(model).attribute(x, target=0, classes=2, steps=5,
                                                              batch_size=1)
    torch.testing.assert_close(grouped.attributions, whole.attributions)
    torch.testing.assert_close(grouped.delta, whole.delta)
    assert torch.equal(grouped.info["steps_taken"], whole.info["steps_taken"])
