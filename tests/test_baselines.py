"""baselines.py: every baseline spec becomes a (K, B, *S) tensor, checked."""

import pytest
import torch

from pathattr.baselines import Blur, Gaussian, Several, Uniform, gaussian_blur, make_baselines


def test_every_spec_and_its_shape():
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(make_baselines(x, None), torch.zeros(1, *x.shape))
    assert torch.equal(make_baselines(x, "zero"), torch.zeros(1, *x.shape))
    assert torch.equal(make_baselines(x, 0.5), torch.full((1, *x.shape), 0.5))
    one = torch.randn(3, 8, 8)
    assert torch.equal(make_baselines(x, one), one.expand_as(x)[None])  # shared
    each = torch.randn(*x.shape)
    assert torch.equal(make_baselines(x, each), each[None])  # one per example
    k = torch.randn(4, 3, 8, 8)
    assert torch.equal(make_baselines(x, Several(k)), k[:, None].expand(4, *x.shape))
    u = make_baselines(x, Uniform(-1, 1, samples=3, seed=1))
    assert u.shape == (3, *x.shape) and u.min() >= -1 and u.max() <= 1
    assert torch.equal(u, make_baselines(x, Uniform(-1, 1, samples=3, seed=1)))  # seeded
    g = make_baselines(x, Gaussian(0.0, samples=2))
    assert torch.equal(g, x.expand(2, *x.shape))  # sigma 0: the input itself
    b = make_baselines(x, Blur(1.5))[0]
    torch.testing.assert_close(b, gaussian_blur(x, 1.5))
    ids = torch.tensor([[5, 6, 7]])
    assert make_baselines(ids, 0).tolist() == [[[0, 0, 0]]]  # token ids: ids too


def test_the_blur_keeps_a_constant_image_and_the_mean():
    x = torch.full((1, 2, 9, 9), 3.0)
    torch.testing.assert_close(gaussian_blur(x, 2.0), x)
    y = torch.randn(1, 1, 16, 16)
    assert abs(float(gaussian_blur(y, 1.0).mean() - y.mean())) < 0.05


@pytest.mark.parametrize("spec, error, message", [
    (torch.zeros(5, 3, 8, 8), ValueError, "Several"), (float("nan"), ValueError, "NaN"),
    ("dark", ValueError, "unknown"), (object(), TypeError, "baselines must be"),
    (Several(torch.zeros(2, 4)), ValueError, "Several baselines have shape"),
])
def test_bad_specs_are_named(spec, error, message):
    with pytest.raises(error, match=message):
        make_baselines(torch.randn(2, 3, 8, 8), spec)
    with pytest.raises(TypeError, match="ids too"):
        make_baselines(torch.tensor([[1, 2]]), 0.5)


def test_blur_of_a_signal_one_pixel_high_is_a_1d_gaussian_along_it():
    g = torch.Generator().manual_seed(7)
    s = torch.randn(2, 3, 1, 40, generator=g, dtype=torch.float64)
    got = gaussian_blur(s, 2.0, 11)
    t = torch.arange(-5, 6, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / 2.0) ** 2)
    k = k / k.sum()
    padded = torch.nn.functional.pad(s[:, :, 0], (5, 5), mode="reflect")
    ref = torch.nn.functional.conv1d(padded, k.view(1, 1, -1).expand(3, 1, -1), groups=3)
    torch.testing.assert_close(got[:, :, 0], ref, rtol=1e-12, atol=1e-12)
    # an 8 x 8 image: the kernel is capped to 15 per axis, so 11 x 11 stays 11 x 11
    img = torch.randn(1, 1, 8, 8, generator=g, dtype=torch.float64)
    k2 = (k[:, None] * k[None, :]).view(1, 1, 11, 11)
    ref2 = torch.nn.functional.conv2d(torch.nn.functional.pad(img, (5,) * 4, mode="reflect"), k2)
    torch.testing.assert_close(gaussian_blur(img, 2.0, 11), ref2, rtol=1e-12, atol=1e-12)
