"""``compute_convergence_delta`` on every method with a gap, and ``metrics.convergence_delta``:
equal to Captum's on the same attributions, and to the gap recomputed from plain forwards."""

import pytest
import torch
from captum import attr as ca
from torch import nn

import pathattr
from pathattr.metrics import convergence_delta


class Two(nn.Module):
    """Two inputs and a forward argument, as Captum's tests use them."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 6), nn.Linear(3, 6)
        self.hidden, self.head = nn.Linear(6, 6), nn.Linear(6, 3)

    def forward(self, x, y, scale=1.0):
        return self.head(torch.tanh(self.hidden(torch.tanh(self.a(x) + self.b(y))))) * scale


def _model():
    torch.manual_seed(0)
    return Two().double().eval()


CASES = [("IntegratedGradients", ca.IntegratedGradients, ()),
         ("DeepLift", ca.DeepLift, ()),
         ("LayerIntegratedGradients", ca.LayerIntegratedGradients, ("hidden",)),
         ("LayerConductance", ca.LayerConductance, ("hidden",)),
         ("LayerDeepLift", ca.LayerDeepLift, ("hidden",))]


@pytest.mark.parametrize("name,captum_cls,layer", CASES, ids=[c[0] for c in CASES])
def test_equals_captums_on_the_same_attributions(name, captum_cls, layer):
    m = _model()
    x, y = torch.randn(5, 4, dtype=torch.double), torch.randn(5, 3, dtype=torch.double)
    bx, by = torch.zeros_like(x), 0.5 * torch.ones_like(y)
    target = torch.tensor([0, 1, 2, 0, 1])
    ours = getattr(pathattr, name)(m, *[getattr(m, n) for n in layer])
    theirs = captum_cls(m, *[getattr(m, n) for n in layer])
    kw = {"steps": 16} if "DeepLift" not in name else {}
    r = ours.attribute((x, y), (bx, by), target=target, additional_forward_args=(2.0,), **kw)
    attrs = r.attributions
    # post-processed: the gap moves with it
    for a in (attrs, tuple(2 * t for t in attrs) if isinstance(attrs, tuple) else 2 * attrs):
        got = ours.compute_convergence_delta(a, (bx, by), (x, y), target, (2.0,))
        want = theirs.compute_convergence_delta(a, (bx, by), (x, y), target=target,
                                                additional_forward_args=(2.0,))
        torch.testing.assert_close(got, want.to(got.dtype), rtol=0, atol=1e-10)
    torch.testing.assert_close(ours.compute_convergence_delta(attrs, (bx, by), (x, y), target,
                                                              (2.0,)), r.delta)


def test_function_form_scalar_start_and_plain_forwards():
    m = _model()
    x, y = torch.randn(3, 4, dtype=torch.double), torch.randn(3, 3, dtype=torch.double)
    a = (torch.randn(3, 4, dtype=torch.double), torch.randn(3, 3, dtype=torch.double))
    got = convergence_delta(m, a, 0.0, (x, y), target=1)
    with torch.no_grad():
        d_f = m(x, y)[:, 1] - m(torch.zeros_like(x), torch.zeros_like(y))[:, 1]
    torch.testing.assert_close(got, a[0].sum(1) + a[1].sum(1) - d_f)


def test_refusals_name_the_argument():
    m = _model()
    x, y = torch.randn(3, 4, dtype=torch.double), torch.randn(3, 3, dtype=torch.double)
    with pytest.raises(ValueError, match="batch size"):
        convergence_delta(m, (x[:2], y[:2]), 0.0, (x, y), target=1)
    with pytest.raises(TypeError, match="attributions"):
        convergence_delta(m, [x, y], 0.0, (x, y), target=1)
    with pytest.raises(ValueError, match="one"):
        convergence_delta(m, (x, y), (pathattr.baselines.Several(
            torch.zeros(2, 4, dtype=torch.double)), pathattr.baselines.Several(
            torch.zeros(2, 3, dtype=torch.double))), (x, y), target=1)
