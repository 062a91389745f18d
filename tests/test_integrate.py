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
from pathattr.call import Explainer, setup
from pathattr.engine import guarded
from pathattr.errors import SettingError
from pathattr.integrate import Integral, Integrator, Path, Points, integrate, straight, totals
from pathattr.methods.integrated_gradients import IGIntegral, IntegratedGradients
from pathattr.methods.sequence import METHODS  # noqa: F401  (imported before any entry is added)
from pathattr.targets import Target


class MeanGradient(Integrator):
    """A new path method with an option, for the test: the unweighted mean of the shared
    pass's gradients times ``x - x'``, times ``scale`` (IG itself on the midpoint rule, whose
    weights are all ``1 / m``, at ``scale=1``)."""

    OPTIONS = ("scale",)

    def __init__(self, scale: float = 1.0) -> None:
        if not isinstance(scale, (int, float)) or scale <= 0:
            raise ValueError(f"scale must be a positive number, got {scale!r}")
        self.scale = scale
        self.sums: list[torch.Tensor] = []

    def add(self, points: Points) -> None:
        if not self.sums:
            self.sums = [k.new_zeros((points.path.rows, *k.shape[1:])) for k in points.kept]
        for acc, k in zip(self.sums, points.kept):
            acc.index_add_(0, points.rows, k)

    def finish(self, path: Path) -> Integral:
        m = len(path.alphas)
        attrs = [path.attribution(acc * self.scale / m, i) for i, acc in enumerate(self.sums)]
        return Integral([path.mean(a) for a in attrs],
                        path.mean(totals(attrs) - path.out_delta()), path.alphas, None, {})


class MeanGradientMethod(Explainer):
    """The new method's class: the straight-path recipe with its integrator."""

    def attribute(self, x, baselines=None, target=None, *, steps=50, rule="gausslegendre",
                  scale=1.0, batch_size="auto"):
        s = self.prepare(x, baselines, target, None, None, None)
        return straight(self.model, s, MeanGradient.of({"steps": steps, "rule": rule,
                                                        "scale": scale}), batch_size)


@pytest.fixture
def mean_gradient(monkeypatch):
    entry = registry.MethodInfo(__name__, "MeanGradientMethod", integrator="MeanGradient")
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


def test_a_new_method_option_reaches_every_driver(mean_gradient):
    """Its option through the class, explain (both spellings), SequenceAttribution (at
    construction and per call) and the command line's entry (parse_methods, registry.attribute)."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).double().eval()
    x = torch.randn(2, 5, dtype=torch.float64)
    kw = {"target": 1, "steps": 8, "rule": "riemann_middle"}
    ig = pathattr.IntegratedGradients(model).attribute(x, **kw).attributions
    cls = MeanGradientMethod(model).attribute(x, scale=3.0, **kw).attributions
    torch.testing.assert_close(cls, 3 * ig, rtol=1e-12, atol=1e-14)
    got = pathattr.explain(model, x, [("mean-gradient", {"scale": 3.0}),
                                      "mean-gradient:scale=2"], **kw)
    torch.testing.assert_close(got["mean-gradient:scale=3.0"].attributions, cls)
    torch.testing.assert_close(got["mean-gradient:scale=2"].attributions, 2 * ig)
    with pytest.raises(SettingError, match="no option 'power'; its options: "
                                                     "steps, rule, scale"):
        pathattr.explain(model, x, [("mean-gradient", {"power": 2})], **kw)
    with pytest.raises(ValueError, match="scale must be a positive number"):
        pathattr.explain(model, x, ["mean-gradient:scale=-1"], **kw)
    (entry,) = registry.parse_methods("mean-gradient:scale=3.0", ["mean-gradient"])
    result = registry.attribute(entry, model, x, 1, 8)
    torch.testing.assert_close(result.attributions, MeanGradientMethod(model).attribute(
        x, target=1, steps=8, scale=3.0).attributions)
    with pytest.raises(SettingError, match="has no option 'power'"):
        registry.parse_methods("mean-gradient:power=2", ["mean-gradient"])

    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=30,
                                     n_positions=16)
    lm = transformers.GPT2LMHeadModel(config).double().eval()
    ids, targets = torch.randint(1, 30, (2, 4)), torch.randint(1, 30, (2, 2))
    lm_kw = {"steps": 6, "rule": "riemann_middle"}
    ig_lm = pathattr.SequenceAttribution(lm).attribute(ids, targets, **lm_kw).scores
    made = pathattr.SequenceAttribution(lm, "mean-gradient", scale=3.0)
    torch.testing.assert_close(made.attribute(ids, targets, **lm_kw).scores, 3 * ig_lm)
    torch.testing.assert_close(made.attribute(ids, targets, scale=0.5, **lm_kw).scores,
                               0.5 * ig_lm)
    with pytest.raises(SettingError, match="no option 'power'"):
        pathattr.SequenceAttribution(lm, "mean-gradient", power=2)


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
        f1, f0, _ = engine.ends([])
        path = Path.of(s, engine, f0, f1, ("gausslegendre", 16))
        (integral,) = integrate(path, [IGIntegral.of({"steps": 16})])
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
        f1, f0, _ = engine.ends([])
        path = Path.of(s, engine, f0, f1, ("gausslegendre", 32))
        (integral,) = integrate(path, [IGIntegral.of({"steps": 32})])
    r = integral.result(path)
    each = [IntegratedGradients(model).attribute(x, b[None], target=1, steps=32)
            for b in bases]
    torch.testing.assert_close(r.attributions, sum(e.attributions for e in each) / 3,
                               rtol=1e-12, atol=1e-14)
    gap = torch.stack([model(x)[:, 1] - model(b[None])[:, 1] for b in bases]).mean(0)
    torch.testing.assert_close(r.delta, r.attributions.sum(1) - gap, rtol=0, atol=1e-12)
