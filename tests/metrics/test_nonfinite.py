"""Metrics follow IG's contract: a NaN or inf from the model or the attributions is an error
naming the example (``NonFiniteOutput``), never a NaN score."""

import numpy as np
import pytest
import torch
from torch import nn

from pathattr.errors import NonFiniteOutput
from pathattr.metrics import robustness
from pathattr.metrics.ablation import neuron_ablation
from pathattr.metrics.randomisation import randomisation_check


class LogNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)
        with torch.no_grad():
            self.lin.weight.fill_(1.0)
            self.lin.bias.zero_()

    def forward(self, x):
        return self.lin(x).log()  # NaN where the sum is negative


X = torch.tensor([[1.0, 2.0, 3.0], [-4.0, -4.0, -4.0]])


def test_infidelity_names_the_example():
    with pytest.raises(NonFiniteOutput, match="example 1"):
        robustness.infidelity(LogNet().eval(), X, torch.ones_like(X), target=0)
    with pytest.raises(ValueError, match="attributions contains NaN"):
        robustness.infidelity(nn.Linear(3, 2).eval(), X,
                              torch.full_like(X, float("nan")), target=0)


def test_infidelity_in_chunks_equals_one_forward(monkeypatch):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).eval()
    a = torch.randn_like(X)
    whole = robustness.infidelity(model, X, a, target=0, n_samples=7)
    monkeypatch.setattr(robustness, "chunk_size", lambda *args, **kw: 3)
    torch.testing.assert_close(robustness.infidelity(model, X, a, target=0, n_samples=7), whole)


def test_sensitivity_ablation_and_randomisation_name_non_finite_values():
    def explain(t):
        return t.log()
    with pytest.raises(NonFiniteOutput, match="explain"):
        robustness.sensitivity_max(explain, X)
    with pytest.raises(NonFiniteOutput, match="example 1"):
        neuron_ablation(LogNet().eval(), X, "lin", torch.ones(2, 2), target=0)

    class Broken:  # an explainer whose attributions are NaN while the model is finite
        def __init__(self, model):
            pass

        def attribute(self, x, target=None):
            return torch.full_like(x, float("nan"))
    with pytest.raises(NonFiniteOutput, match="attributions is not finite for example 0"):
        randomisation_check(Broken, nn.Sequential(nn.Linear(3, 2)).eval(), X, target=0,
                            ssim=False)


def test_empty_batches_give_empty_curves_without_a_forward():
    from pathattr.metrics import deletion, insertion, road

    calls = []
    net = nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten(), nn.Linear(72, 3)).eval()
    net.register_forward_hook(lambda *a: calls.append(1))
    empty, none = torch.zeros(0, 3, 8, 8), torch.zeros(0, dtype=torch.long)
    for metric in (insertion, deletion, road):
        c = metric(net, empty, empty, target=none)
        assert c.auc.shape == (0,) and c.scores.shape[0] == 0 and c.scores.shape[1] >= 2
    assert calls == []


def test_small_images_and_zero_steps_are_handled_by_name():
    from pathattr.metrics import insertion, road

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.Flatten(), nn.Linear(2 * 25, 3)).eval()
    x, a = torch.rand(2, 3, 5, 5), torch.rand(2, 3, 5, 5)
    # 0.99 of 25 pixels rounds to all of them: a fraction below 1 keeps one
    c = road(net, x, a, target=torch.tensor([0, 1]), fractions=(0.0, 0.5, 0.99))
    assert torch.isfinite(c.scores).all() and c.scores.shape == (2, 3)
    with pytest.raises(ValueError, match="features_per_step must be an integer >= 1, got 0"):
        insertion(net, x.flatten(1), a.flatten(1), target=0, features_per_step=0)
    r = randomisation_check(lambda m: _Grad(m), net, x, target=0)  # 5 x 5: a 5 x 5 window
    assert np.isfinite(r.ssim).all()
    with pytest.raises(ValueError, match="at least 3 x 3"):
        randomisation_check(lambda m: _Grad(m), nn.Sequential(nn.Flatten(), nn.Linear(12, 2)),
                            torch.rand(1, 3, 2, 2), target=0)


class _Grad:
    def __init__(self, model):
        self.model = model

    def attribute(self, x, target=None):
        from pathattr import Saliency

        return Saliency(self.model).attribute(x, target=target)


def test_integer_images_are_refused_by_name():
    from pathattr.metrics import deletion, insertion

    net = nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten(), nn.Linear(72, 3)).eval()
    x = torch.randint(0, 255, (1, 3, 8, 8))
    for metric in (insertion, deletion):
        with pytest.raises(TypeError, match="x holds integer images"):
            metric(net, x, torch.rand(1, 3, 8, 8), target=0)
