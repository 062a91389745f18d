import numpy as np
import pytest
import torch
from saliency.core import GuidedIG
from saliency.core import guided_ig as pair_guided_ig
from saliency.core.base import INPUT_OUTPUT_GRADIENTS
from torch import nn

from pathattr.methods.guided_ig import GuidedIntegratedGradients
from pathattr.methods.idgi import IDGI
from pathattr.methods.integrated_gradients import IntegratedGradients


def small_cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 6 * 6, 10), nn.Tanh(), nn.Linear(10, 3)).eval()


def pair_call(model, target):
    """PAIR saliency's model-call protocol around a torch model."""
    def call(x_batch, call_model_args=None, expected_keys=None):
        x = torch.as_tensor(np.asarray(x_batch), dtype=torch.float32).requires_grad_(True)
        (g,) = torch.autograd.grad(model(x)[:, target].sum(), x)
        return {INPUT_OUTPUT_GRADIENTS: g.numpy()}
    return call


class _Numpy2:
    """numpy with the ``quantile(interpolation=...)`` keyword PAIR saliency 0.2.1 still uses
    (numpy 2 renamed it ``method``)."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def quantile(a, q, interpolation):
        return np.quantile(a, q, method=interpolation)


def test_matches_pair_saliency(monkeypatch):
    monkeypatch.setattr(pair_guided_ig, "np", _Numpy2())
    model = small_cnn()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 1, 6, 6, generator=g)
    base = torch.randn(3, 1, 6, 6, generator=g) * 0.1
    t = [0, 2, 1]
    ours = GuidedIntegratedGradients(model).attribute(x, base, t, steps=40, fraction=0.25,
                                                      max_dist=0.1)
    for b in range(3):
        ref = GuidedIG().GetMask(x[b].numpy(), pair_call(model, t[b]), x_baseline=base[b].numpy(),
                                 x_steps=40, fraction=0.25, max_dist=0.1)
        # Same algorithm, same float64 path state, same float32 gradients: the only
        # differences are summation order and torch vs math isclose, so ~float32 rounding.
        np.testing.assert_allclose(ours.attributions[b].numpy(), ref, rtol=1e-4,
                                   atol=1e-6 * np.abs(ref).max())


def test_max_dist_zero_is_left_riemann_ig():
    model = small_cnn().double()
    x = torch.randn(2, 1, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    gig = GuidedIntegratedGradients(model).attribute(x, target=1, steps=16, max_dist=0.0)
    ig = IntegratedGradients(model).attribute(x, target=1, steps=16, rule="riemann_left")
    torch.testing.assert_close(gig.attributions, ig.attributions, rtol=1e-9, atol=1e-12)


def test_completeness_improves_with_steps():
    model = small_cnn().double()
    x = torch.randn(2, 1, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    gig = GuidedIntegratedGradients(model)
    coarse = gig.attribute(x, target=0, steps=10).relative_delta()
    fine = gig.attribute(x, target=0, steps=200).relative_delta()
    assert (fine < 0.05).all() and (fine < coarse).all()


@pytest.mark.parametrize("kw", [{"steps": 0}, {"fraction": 1.5}, {"max_dist": -0.1}])
def test_bad_arguments(kw):
    with pytest.raises(ValueError):
        GuidedIntegratedGradients(small_cnn()).attribute(torch.ones(1, 1, 6, 6), target=0, **kw)


def test_idgi_with_max_dist_zero_is_idgi_on_the_straight_path():
    model = small_cnn().double()
    x = torch.randn(2, 1, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    gig = GuidedIntegratedGradients(model).attribute(x, target=1, steps=12, max_dist=0.0,
                                                     idgi=True)
    ref = IDGI(model).attribute(x, target=1, steps=12)
    torch.testing.assert_close(gig.attributions, ref.attributions, rtol=1e-9, atol=1e-13)
    assert gig.info["idgi"] is True


def test_idgi_on_the_guided_path_is_complete_and_follows_a_linear_models_weights():
    model = small_cnn().double()
    x = torch.randn(3, 1, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    r = GuidedIntegratedGradients(model).attribute(x, target=2, steps=20, idgi=True)
    with torch.no_grad():
        change = model(x)[:, 2] - model(torch.zeros_like(x))[:, 2]
    torch.testing.assert_close(r.attributions.flatten(1).sum(1), change, rtol=0, atol=1e-12)
    # F = w . x has the same gradient everywhere: IDGI_i = w_i^2 / |w|^2 (F(x) - F(x'))
    lin = nn.Sequential(nn.Flatten(), nn.Linear(36, 1)).double().eval()
    w = lin[1].weight.detach()[0]
    a = GuidedIntegratedGradients(lin).attribute(x, target=0, steps=7, idgi=True).attributions
    want = (w.square() / w.square().sum())[None] * (x.flatten(1) @ w)[:, None]
    torch.testing.assert_close(a.flatten(1), want, rtol=1e-10, atol=1e-13)


def test_idgi_must_be_a_bool():
    with pytest.raises(TypeError, match="idgi"):
        GuidedIntegratedGradients(small_cnn()).attribute(torch.ones(1, 1, 6, 6), target=0,
                                                         idgi=1)
