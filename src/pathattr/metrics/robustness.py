"""Infidelity and sensitivity-max (Yeh et al. 2019), with Captum's definitions.

For perturbations ``I_s`` of an input ``x`` (``x~_s = x - I_s``) and attributions ``A``:

    infidelity(x) = mean_s ( sum_j I_sj A_j - (F(x) - F(x~_s)) )^2

(with ``normalize``, ``A`` is first scaled by the least-squares ``beta``, as Captum's
``normalize=True``), and for an explanation function ``E``:

    sensitivity_max(x) = max_s || E(x~_s) - E(x) || / || E(x) ||     (Frobenius norms)

with ``x~_s`` drawn uniformly from the L-infinity ball of ``radius`` around ``x``. As in Captum,
``perturb_fn`` receives the inputs with each example repeated ``n_samples`` times
(``repeat_interleave``), so the same function gives the same numbers in both libraries.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..call import setup
from ..engine import chunk_size, guarded
from ..targets import TargetSpec
from ..validate import check_finite, check_positive_int, check_tensor


def gaussian_perturbation(sigma: float = 0.003, seed: int = 0
                          ) -> Callable[[Tensor], tuple[Tensor, Tensor]]:
    """A ``perturb_fn`` for ``infidelity``: Gaussian noise of standard deviation ``sigma`` (the
    scale of Captum's documented example), seeded. Returns ``(I, x - I)``."""
    def perturb(x: Tensor) -> tuple[Tensor, Tensor]:
        g = torch.Generator(device=x.device).manual_seed(seed)
        noise = torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype) * sigma
        return noise, x - noise
    return perturb


def uniform_perturbation(radius: float = 0.02, seed: int = 0) -> Callable[[Tensor], Tensor]:
    """A ``perturb_fn`` for ``sensitivity_max``: ``x`` plus noise uniform in the L-infinity ball
    of ``radius`` (Captum's default), seeded."""
    def perturb(x: Tensor) -> Tensor:
        g = torch.Generator(device=x.device).manual_seed(seed)
        u = torch.rand(x.shape, generator=g, device=x.device, dtype=x.dtype)
        return x + (2 * u - 1) * radius
    return perturb


def infidelity(model: nn.Module, x: Tensor, attributions: Tensor,
               perturb_fn: Callable[[Tensor], tuple[Tensor, Tensor]] | None = None,
               target: TargetSpec = None, n_samples: int = 10, normalize: bool = False,
               additional_forward_args: tuple | None = None,
               forward_kwargs: dict | None = None) -> Tensor:
    """Infidelity per example, ``(B,)``. ``perturb_fn(x_repeated) -> (I, x - I)`` (default:
    ``gaussian_perturbation()``). Raises ``NonFiniteOutput`` where the model's output is NaN
    or inf. Cost: one forward on ``x`` and one on ``B * n_samples``
    perturbed inputs, in chunks sized like the path engine's."""
    check_positive_int(n_samples, "n_samples")
    x = check_tensor(x, "x")
    attributions = check_tensor(attributions, "attributions")
    if attributions.shape != x.shape:
        raise ValueError(f"attributions has shape {tuple(attributions.shape)}, expected "
                         f"{tuple(x.shape)} (the shape of x)")
    s = setup(model, x, None, target, additional_forward_args, forward_kwargs)
    b = s.b
    rows = torch.arange(b, device=s.x.device).repeat_interleave(n_samples)
    perturbation, perturbed = (perturb_fn or gaussian_perturbation())(s.x[rows])
    if perturbation.shape != perturbed.shape or perturbed.shape != s.x[rows].shape:
        raise ValueError(f"perturb_fn must return (perturbation, perturbed input), each of "
                         f"shape {tuple(s.x[rows].shape)}")
    with guarded(model), torch.no_grad():
        f = check_finite(s.target.select(s.call(s.x), torch.arange(b, device=s.x.device)),
                         "the model's output")
        step = chunk_size(s.call, s.x, "auto", len(rows))
        f_pert = torch.cat([s.target.select(s.call(perturbed[i:i + step].to(s.x.dtype),
                                                    rows[i:i + step]), rows[i:i + step])
                            for i in range(0, max(len(rows), 1), step)])
    check_finite(f_pert.view(b, n_samples), "the model's output on a perturbed input")
    dot = (perturbation.flatten(1) * attributions.to(s.x.dtype)[rows].flatten(1)).sum(1)
    dot, change = dot.view(b, n_samples), (f[rows] - f_pert).view(b, n_samples)
    if normalize:
        aa, ab = (dot * dot).sum(1), (dot * change).sum(1)
        beta = torch.where(aa == 0, torch.zeros_like(ab), ab / aa.where(aa != 0, 1.0))
        dot = beta[:, None] * dot
    return ((dot - change) ** 2).mean(1)


def sensitivity_max(explain: Callable[[Tensor], Tensor], x: Tensor,
                    perturb_fn: Callable[[Tensor], Tensor] | None = None, radius: float = 0.02,
                    n_samples: int = 10) -> Tensor:
    """Sensitivity-max per example, ``(B,)``. ``explain(x) -> attributions`` is called on
    ``x`` and on each sample's ``B`` perturbed rows (so a target of ``B`` works);
    ``perturb_fn(x_repeated) -> perturbed`` (default ``uniform_perturbation(radius)``).
    Cost: ``n_samples + 1`` calls of ``explain``."""
    check_positive_int(n_samples, "n_samples")
    x = check_tensor(x, "x")
    base = check_finite(_attributions(explain(x), "explain(x)", x), "explain(x)")
    perturbed = (perturb_fn or uniform_perturbation(radius))(
        x.repeat_interleave(n_samples, 0))
    if perturbed.shape != (len(x) * n_samples, *x.shape[1:]):
        raise ValueError(f"perturb_fn must return the perturbed inputs, shape "
                         f"{(len(x) * n_samples, *x.shape[1:])}")
    norm = base.flatten(1).norm(dim=1)
    norm = torch.where(norm == 0, torch.ones_like(norm), norm)
    worst = torch.zeros(len(x), dtype=base.dtype, device=base.device)
    for k in range(n_samples):  # rows b * n + k: sample k of every example
        e = check_finite(_attributions(explain(perturbed[k::n_samples]),
                                       "explain(perturbed x)", x), "explain(perturbed x)")
        worst = torch.maximum(worst, (e - base).flatten(1).norm(dim=1) / norm)
    return worst


def _attributions(a: object, what: str, x: Tensor) -> Tensor:
    a = getattr(a, "attributions", a)  # an Attribution or a tensor
    if not isinstance(a, Tensor) or a.shape[0] != len(x):
        raise ValueError(f"{what} must return attributions with one row per example of x "
                         f"({len(x)}), got {getattr(a, 'shape', type(a).__name__)}")
    return a.detach()
