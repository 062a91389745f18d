"""IDGI against its equations computed by hand on a two-feature analytic model, and its
completeness (exact by construction) against plain forwards on random networks."""

import math

import pytest
import torch
from torch import nn

import pathattr
from pathattr.methods.idgi import IDGI


class Analytic(nn.Module):
    """F(a, b) = a^2 b + sin b."""

    def forward(self, x):
        return (x[:, 0] ** 2 * x[:, 1] + torch.sin(x[:, 1])).unsqueeze(1)


def _by_hand(x, steps):
    # sum over steps k of g_k,i^2 / ||g_k||^2 * (F(x_{k+1}) - F(x_k)), g_k = grad F(x_k)
    def f(a, b):
        return a * a * b + math.sin(b)

    def grad(a, b):
        return 2 * a * b, a * a + math.cos(b)

    out = [0.0, 0.0]
    for k in range(steps):
        p = [k / steps * v for v in x]
        q = [(k + 1) / steps * v for v in x]
        g = grad(*p)
        d = f(*q) - f(*p)
        for i in range(2):
            out[i] += g[i] ** 2 / (g[0] ** 2 + g[1] ** 2) * d
    return out


@pytest.mark.parametrize("steps", [1, 4, 25])
@pytest.mark.parametrize("batch_size", ["auto", 3])  # 3: chunks cut rows' paths anywhere
def test_equals_the_papers_equations_by_hand(steps, batch_size):
    x = torch.tensor([[1.5, -0.7], [0.3, 2.0]], dtype=torch.double)
    r = IDGI(Analytic()).attribute(x, torch.zeros_like(x), target=0, steps=steps,
                                   batch_size=batch_size)
    want = torch.tensor([_by_hand(row.tolist(), steps) for row in x], dtype=torch.double)
    torch.testing.assert_close(r.attributions, want, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(r.alphas, torch.arange(steps, dtype=torch.double) / steps)


def test_complete_against_plain_forwards_and_same_sign_as_each_step():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 3)).double().eval()
    x, base = torch.randn(5, 6, dtype=torch.double), torch.randn(5, 6, dtype=torch.double)
    r = pathattr.IDGI(m).attribute(x, base, target=2, steps=16, batch_size=7)
    with torch.no_grad():
        d_f = m(x)[:, 2] - m(base)[:, 2]
    torch.testing.assert_close(r.attributions.sum(1), d_f, rtol=0, atol=1e-12)
    torch.testing.assert_close(r.delta, r.attributions.sum(1) - d_f, rtol=0, atol=1e-12)
    # a monotone path: every share has the sign of the change
    lin = nn.Sequential(nn.Linear(6, 1)).double().eval()
    a = pathattr.IDGI(lin).attribute(x, base, target=0, steps=3).attributions
    with torch.no_grad():
        change = (lin(x) - lin(base))[:, 0]
    assert ((a * change[:, None]) >= 0).all()


def test_a_flat_step_stays_in_the_gap():
    # ReLU of a negative input: zero gradient at every node but the last step's change
    class Kink(nn.Module):
        def forward(self, x):
            return torch.relu(x - 0.9).sum(1, keepdim=True)

    x = torch.ones(1, 2, dtype=torch.double)
    r = IDGI(Kink()).attribute(x, torch.zeros_like(x), target=0, steps=2)
    assert torch.equal(r.attributions, torch.zeros_like(x))
    torch.testing.assert_close(r.delta, torch.tensor([-0.2], dtype=torch.double))
