"""Expected Gradients (Erion, Janizek, Sturmfels, Lundberg, Lee 2021, "Improving performance of
deep learning models with axiomatic attribution priors and expected gradients").

IG averaged over baselines drawn from a data set ``D``, with the path integral sampled too:

    EG_i(x) = E_{x' ~ D, a ~ U(0, 1)} [ (x_i - x'_i) dF/dx_i (x' + a (x - x')) ]

``sampling="random"`` is the paper's estimator: ``samples`` draws of ``(x', a)`` per example,
one gradient each; its error is statistical and is reported as a standard error. Its
deterministic counterpart, ``sampling="quadrature"``, integrates every baseline of ``D`` with a
quadrature rule (IG over several baselines), whose error is the completeness gap and can be
driven below a tolerance with ``steps="auto"``. The two estimate the same quantity, so the
sampling error sits next to the quadrature error.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from ..baselines import Several
from ..call import ConvergenceDelta, Inputs
from ..engine import PathEngine, accumulation_dtype, guarded
from ..forward import OutputSpec
from ..result import Attribution
from ..targets import TargetSpec
from ..validate import check_positive_int
from .integrated_gradients import IntegratedGradients

SAMPLINGS = ("random", "quadrature")


def _data(x: Inputs, baselines: object) -> Several | tuple[Several, ...]:
    """The data set as ``Several`` specs (one per input), checked to be ``(K, *S)`` tensors."""
    single = isinstance(x, Tensor)
    given = (baselines,) if single else baselines
    if not isinstance(given, tuple) or (not single and isinstance(x, tuple)
                                        and len(given) != len(x)):
        raise TypeError("baselines must be one (K, *S) tensor of reference examples per input "
                        "(a tuple of them for tuple inputs)")
    specs = []
    for i, t in enumerate(given):
        if isinstance(t, Several):
            t = t.baselines
        name = "baselines" if single else f"baselines[{i}]"
        if not isinstance(t, Tensor) or not t.is_floating_point() or t.dim() == 0 \
                or len(t) == 0:
            raise TypeError(f"{name} must be a non-empty floating (K, *S) tensor of reference "
                            f"examples drawn from the data (Expected Gradients has no default "
                            f"baseline), got {t!r:.80}")
        specs.append(Several(t))
    return specs[0] if single else tuple(specs)


class ExpectedGradients(ConvergenceDelta):
    """IG averaged over the baselines of a data set, sampled or integrated."""

    def attribute(
        self,
        x: Inputs,
        baselines: Tensor | tuple[Tensor, ...],
        target: TargetSpec = None,
        *,
        samples: int = 64,
        sampling: Literal["random", "quadrature"] = "random",
        seed: int | None = 0,
        steps: int | Literal["auto"] = 50,
        rule: str = "gausslegendre",
        tol: float = 0.01,
        max_steps: int = 512,
        batch_size: int | Literal["auto"] = "auto",
        additional_forward_args: tuple | None = None,
        forward_kwargs: dict | None = None,
        output: OutputSpec = None,
    ) -> Attribution:
        """Return Expected Gradients attributions (the structure of ``x``).

        ``baselines``: the data set, ``(K, *S)`` reference examples shared by every example.
        ``sampling="random"``: ``samples`` draws per example of a baseline (uniform over the
        ``K``) and of ``a ~ U(0, 1)`` (``seed``: a private generator; None: torch's global
        one, as Captum's GradientShap). ``delta = sum - mean_s (F(x) - F(x'_s))`` over the
        drawn baselines (the path integral's sampling error; it shrinks as ``1/sqrt(samples)``);
        ``info["standard_error"]`` (the structure of ``x``) and ``info["sum_standard_error"]``
        ``(B,)`` are the Monte Carlo standard errors of the attributions and of their sum (the
        draws' spread over ``sqrt(samples)``); ``alphas`` ``(B, samples)`` the drawn ``a``,
        ``info["baseline_index"]`` ``(B, samples)`` the drawn baselines.
        ``sampling="quadrature"``: IG from every baseline with ``steps`` / ``rule`` (or
        ``steps="auto"`` to ``tol``), averaged; ``delta`` against the mean over all ``K``.
        Cost: random: ``samples`` forward+backward passes per example and ``samples + 1``
        forwards (the drawn baselines' outputs, the input's); quadrature: ``K * steps``
        forward+backward passes per example.
        """
        data = _data(x, baselines)
        if sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {', '.join(SAMPLINGS)}, got "
                             f"{sampling!r}")
        if sampling == "quadrature":
            r = IntegratedGradients(self.model).attribute(
                x, data, target, steps=steps, rule=rule, tol=tol, max_steps=max_steps,
                batch_size=batch_size, additional_forward_args=additional_forward_args,
                forward_kwargs=forward_kwargs, output=output)
            r.info["sampling"] = sampling
            return r
        check_positive_int(samples, "samples", minimum=2)
        if seed is not None:
            check_positive_int(seed, "seed", minimum=0)
        s = self.prepare(x, None, target, additional_forward_args, forward_kwargs, output)
        b = s.b
        specs = (data,) if isinstance(data, Several) else data
        # the data set packed like x, K rows (not K copies of every example)
        ref = s.packer.pack([spec.make(xi)[:, 0] for spec, xi in
                             zip(specs, s.packer.unpack(s.x))])
        # rows j * B + e: draw j of example e (row % B is the example, as targets expect)
        gen = None if seed is None else torch.Generator().manual_seed(seed)
        pick = torch.randint(len(ref), (samples, b), generator=gen).to(s.x.device)
        alphas = torch.rand((samples, b), generator=gen, dtype=torch.float64).to(
            device=s.x.device, dtype=s.x.dtype)
        ex = torch.arange(b, device=s.x.device).repeat(samples)
        dtype = accumulation_dtype(s.x.dtype)
        total = torch.zeros((b, *s.x.shape[1:]), dtype=dtype, device=s.x.device)
        squares = torch.zeros_like(total)
        sums = torch.zeros((samples, b), dtype=dtype, device=s.x.device)
        with guarded(self.model):
            engine = PathEngine(s.call, s.x[ex], ref[pick.flatten()], s.target, batch_size)
            points = torch.arange(len(ex), device=s.x.device)
            for ch in engine.gradients(points, alphas.flatten()):
                c = (ch.grads[0] * engine.diff[ch.rows]).to(dtype)
                e = ch.rows % b
                total.index_add_(0, e, c)
                squares.index_add_(0, e, c.square())
                sums.view(-1)[ch.rows] = c.flatten(1).sum(1)
            f_base = engine.values(points, torch.zeros_like(alphas.flatten())).to(dtype)
            f_x = engine.values(points[:b], torch.ones_like(alphas[0])).to(dtype)
        attr = total / samples
        var = (squares / samples - attr.square()).clamp_min(0) * samples / (samples - 1)
        out = f_x - f_base.reshape(samples, b).mean(0)
        se_sum = sums.std(0) / samples ** 0.5
        return Attribution(s.structure(attr), attr.flatten(1).sum(1) - out, alphas.T,
                           None, {"sampling": sampling, "samples": samples, "seed": seed,
                                  "baseline_index": pick.T, "output_delta": out,
                                  "gradient_evaluations": s.evaluations(samples),
                                  "standard_error": s.structure((var / samples).sqrt()),
                                  "sum_standard_error": se_sum})
