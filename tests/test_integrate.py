"""The integrator protocol (``pathattr.integrate``): a path method written once, as one
integrator plus one registry entry, is computed by ``explain`` and by ``SequenceAttribution``
with no change to either; the target axis ``T`` gives each target its own integral."""

import sys

import pytest
import torch
from torch import nn

import pathattr
from pathattr import registry
from pathattr.baselines import Several
from pathattr.call import setup
from pathattr.engine import guarded
from pathattr.integrate import Integral, Integrator, Path, Step, integrate, totals
from pathattr.methods.integrated_gradients import GradientIntegral, IntegratedGradients
from pathattr.methods.sequence import METHODS  # noqa: F401  (imported before any entry is added)
from pathattr.targets import Target


class MeanGradient(Integrator):
    """A new path method, for the test: the unweighted mean of the shared pass's gradients
    times ``x - x'`` (IG itself on the midpoint rule, whose weights are all ``1 / m``)."""

    @classmethod
    def of(cls, options: dict) -> Integrator:
        return cls()

    def __init__(self) -> None:
        self.sums: list[torch.Tensor] = []

    def add(self, step: Step) -> None:
        if not self.sums:
            self.sums = [k.new_zeros((step.path.rows, *k.shape[1:])) for k in step.kept]
        for acc, k in zip(self.sums, step.kept):
            acc.index_add_(0, step.rows, k)

    def finish(self, path: Path) -> Integral:
        m = len(path.alphas)
        attrs = [path.attribution(acc / m, i) for i, acc in enumerate(self.sums)]
        return Integral([path.mean(a) for a in attrs],
                        path.mean(totals(attrs) - path.out_delta()), path.alphas, None, {})


@pytest.fixture
def mean_gradient(monkeypatch):
    entry = registry.MethodInfo(__name__, "IntegratedGradients", shared=True,
                                integrator="MeanGradient")
    monkeypatch.setitem(registry.METHODS, "mean-gradient", entry)
    assert sys.modules[__name__].MeanGradient is MeanGradient


def test_a_new_integrator_works_in_explain(mean_gradient):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).double().eval()
    x = torch.randn(4, 5, dtype=torch.float64)
    got = pathattr.explain(model, x, ["mean-gradient", "ig"], target=2, steps=9,
                           rule="riemann_middle")
    torch.testing.assert_close(got["mean-gradient"].attributions, got["ig"].attributions,
                               rtol=1e-12, atol=1e-14)
    # its gap against plain forwards, recomputed here
    f = model(x)[:, 2] - model(torch.zeros_like(x))[:, 2]
    torch.testing.assert_close(got["mean-gradient"].delta,
                               got["mean-gradient"].attributions.sum(1) - f, rtol=0, atol=1e-12)


def test_a_new_integrator_works_for_every_target_token(mean_gradient):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=50,
                                     n_positions=32)
    model = transformers.GPT2LMHeadModel(config).double().eval()
    ids = torch.randint(1, 50, (2, 5))
    targets = torch.randint(1, 50, (2, 3))
    new = pathattr.SequenceAttribution(model, "mean-gradient").attribute(
        ids, targets, steps=7, rule="riemann_middle")
    ig = pathattr.SequenceAttribution(model, "ig").attribute(ids, targets, steps=7,
                                                             rule="riemann_middle")
    torch.testing.assert_close(new.scores, ig.scores, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(new.delta, ig.delta, rtol=1e-8, atol=1e-10)


def test_the_target_axis_gives_each_target_its_own_integral():
    """A target with two outputs per row: one pass, and each target's attributions equal IG
    with that target alone (and its gap the recomputed F(x) - F(x') of that output)."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 6), nn.Softplus(), nn.Linear(6, 3)).double().eval()
    x = torch.randn(3, 4, dtype=torch.float64)
    both = Target(3, fn=lambda out, rows: out[:, [0, 2]], outputs=2)
    s = setup(model, x, None, both)
    with guarded(model):
        engine = s.engine(8)
        f1, f0 = engine.endpoints()
        path = Path.of(s, engine, f0, f1, "gausslegendre", 16)
        (integral,) = integrate(path, [GradientIntegral()])
    (attr,) = integral.attributions
    assert attr.shape == (3, 2, 4)
    for t, cls in enumerate((0, 2)):
        alone = IntegratedGradients(model).attribute(x, target=cls, steps=16)
        torch.testing.assert_close(attr[:, t], alone.attributions, rtol=1e-12, atol=1e-14)
        f = model(x)[:, cls] - model(torch.zeros_like(x))[:, cls]
        torch.testing.assert_close(integral.delta[:, t], attr[:, t].sum(1) - f, rtol=0,
                                   atol=1e-12)


def test_several_baselines_average_and_the_gap_is_that_of_the_mean():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 2)).double().eval()
    x = torch.randn(2, 4, dtype=torch.float64)
    bases = torch.randn(3, 4, dtype=torch.float64)
    s = setup(model, x, Several(bases), target=1)
    with guarded(model):
        engine = s.engine(16)
        f1, f0 = engine.endpoints()
        path = Path.of(s, engine, f0, f1, "gausslegendre", 32)
        (integral,) = integrate(path, [GradientIntegral()])
    r = integral.result(path)
    each = [IntegratedGradients(model).attribute(x, b[None], target=1, steps=32)
            for b in bases]
    torch.testing.assert_close(r.attributions, sum(e.attributions for e in each) / 3,
                               rtol=1e-12, atol=1e-14)
    gap = torch.stack([model(x)[:, 1] - model(b[None])[:, 1] for b in bases]).mean(0)
    torch.testing.assert_close(r.delta, r.attributions.sum(1) - gap, rtol=0, atol=1e-12)
