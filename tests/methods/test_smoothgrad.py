import pytest
import torch
from torch import nn

from pathattr.methods.idg import IntegratedDecisionGradients
from pathattr.methods.integrated_gradients import IntegratedGradients
from pathattr.methods.smoothgrad import SmoothGrad


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).eval()


@pytest.mark.parametrize("method", [IntegratedGradients, IntegratedDecisionGradients])
def test_one_sample_without_noise_is_the_method(method):
    x = torch.randn(3, 4)
    alone = method(mlp()).attribute(x, target=1, steps=8)
    sg = SmoothGrad(method(mlp()), samples=1, sigma=0).attribute(x, target=1, steps=8)
    assert torch.equal(sg.attributions, alone.attributions)
    torch.testing.assert_close(sg.info["deltas"][0], alone.delta)


def test_mean_over_noisy_copies():
    x = torch.randn(2, 4, generator=torch.Generator().manual_seed(1))
    ig = IntegratedGradients(mlp())
    sg = SmoothGrad(ig, samples=3, sigma=0.2, seed=5).attribute(x, target=0, steps=8)
    gen = torch.Generator().manual_seed(5)
    spread = (x.max(1).values - x.min(1).values)[:, None]
    manual = sum(ig.attribute(x + 0.2 * spread * torch.randn(x.shape, generator=gen),
                              target=0, steps=8).attributions for _ in range(3)) / 3
    torch.testing.assert_close(sg.attributions, manual)
    assert sg.delta is None and sg.info["deltas"].shape == (3, 2)


def test_bad_arguments():
    with pytest.raises(TypeError, match="attribute"):
        SmoothGrad(mlp())
    with pytest.raises(ValueError, match="samples"):
        SmoothGrad(IntegratedGradients(mlp()), samples=0)
    with pytest.raises(ValueError, match="sigma"):
        SmoothGrad(IntegratedGradients(mlp()), sigma=-1)
