import numpy as np
import pytest
import torch
from torch import nn

from pathattr.baselines import Several
from pathattr.methods.integrated_gradients import IntegratedGradients
from pathattr.methods.left_ig import LeftIntegratedGradients


class Saturating(nn.Module):
    """F(x) = tanh(3 w . x): along 0 -> x the output rises, then saturates."""

    def __init__(self, w):
        super().__init__()
        self.w = w

    def forward(self, x):
        return torch.tanh(3 * x @ self.w)


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 3)).double().eval()


@pytest.mark.parametrize("rule", ["gausslegendre", "riemann_trapezoid", "riemann_left"])
def test_saturation_one_is_ig(rule):
    x = torch.randn(3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    base = Several(torch.randn(2, 5, dtype=torch.float64,
                               generator=torch.Generator().manual_seed(2)))
    t = torch.tensor([0, 1, 2])
    left = LeftIntegratedGradients(mlp()).attribute(x, base, t, steps=20, rule=rule, saturation=1)
    ig = IntegratedGradients(mlp()).attribute(x, base, t, steps=20, rule=rule)
    torch.testing.assert_close(left.attributions, ig.attributions, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(left.delta, ig.delta, rtol=1e-9, atol=1e-12)
    assert (left.info["saturation_alpha"] == 1).all()


def test_matches_the_integral_up_to_the_saturation_point():
    w = torch.tensor([1.0, -0.5, 2.0], dtype=torch.float64)
    model = Saturating(w)
    x = torch.tensor([[1.0, 0.4, 0.6], [0.2, -1.0, 0.9]], dtype=torch.float64)
    r = LeftIntegratedGradients(model).attribute(x, steps=200, saturation=0.8)
    z = (x @ w).numpy()
    f1 = np.tanh(3 * z)
    cut = np.arctanh(0.8 * f1) / (3 * z)  # F(a) = tanh(3 a z) reaches 0.8 F(1)
    np.testing.assert_allclose(r.info["saturation_alpha"].numpy(), cut, rtol=1e-3)
    # int_0^a* dF/dx_i da = w_i (1 - tanh^2(3 a z)) 3 da, closed form: w_i tanh(3 a* z) / z
    ref = x * w * torch.as_tensor(np.tanh(3 * cut * z) / z)[:, None]
    torch.testing.assert_close(r.attributions, ref, rtol=2e-3, atol=1e-6)
    assert (r.delta.abs().numpy() < 2e-3 * np.abs(0.8 * f1)).all()


def test_chunking_does_not_change_the_result():
    x = torch.randn(4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    t = torch.tensor([0, 1, 2, 0])
    left = LeftIntegratedGradients(mlp())
    runs = [left.attribute(x, target=t, steps=13, saturation=0.6, batch_size=bs)
            for bs in (1, 5, 13, "auto")]
    for r in runs[1:]:
        torch.testing.assert_close(r.attributions, runs[0].attributions, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(r.info["saturation_alpha"], runs[0].info["saturation_alpha"])


@pytest.mark.parametrize("saturation", [0, -0.1, 1.5, True, "0.5"])
def test_bad_saturation(saturation):
    with pytest.raises(ValueError, match="saturation"):
        LeftIntegratedGradients(mlp()).attribute(torch.ones(1, 5, dtype=torch.float64),
                                                 target=0, saturation=saturation)
