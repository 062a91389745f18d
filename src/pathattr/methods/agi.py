"""Adversarial Gradient Integration (Pan, Li, Zhu 2021).

For each false class ``j`` an adversarial path leaves the input by signed gradient (FGSM) steps
toward ``j``, ``x_{t+1} = x_t + eps sign(grad f_j(x_t))``, until the model predicts ``j`` or
``steps`` steps are done; the explained output ``f_i`` is integrated along it:

    AGI = sum_j sum_t -grad f_i(x_t) * (x_{t+1} - x_t)

Each path's sum is a left-Riemann estimate of ``f_i(x) - f_i(x_end^j)``, the score the input loses
on the way to class ``j``; ``delta`` reports the gap to that sum. Deviations from the authors'
code, following the paper: every step starts from the current path point (the code perturbs the
original image at each step), nothing is clamped to [0, 1] (inputs here are arbitrary tensors),
logits are used (the code offers softmax), and ``classes=k`` takes the ``k`` false classes with
the highest logits instead of a random or evenly spaced sample, so results are deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from ..call import Explainer, Inputs
from ..engine import PointEvaluator, guarded
from ..forward import OutputSpec
from ..result import Attribution
from ..targets import TargetSpec, resolve_target
from ..validate import check_number, check_steps


def _predicted(out: Tensor) -> Tensor:
    return out.argmax(1).to(out.dtype)


def _false_classes(logits: Tensor, target: Tensor,
                   classes: int | Sequence[int] | Tensor | None) -> Tensor:
    """``(B, k)`` class ids: the ``k`` highest-scoring classes other than the target, or the
    given ids for every example (an id equal to an example's target is skipped later)."""
    n = logits.shape[1]
    if classes is None:
        classes = max(1, min(10, n - 1))
    if isinstance(classes, int) and not isinstance(classes, bool):
        if not 1 <= classes < n:
            raise ValueError(f"classes must be between 1 and {n - 1} (the false classes of a "
                             f"{n}-class model), got {classes}")
        masked = logits.scatter(1, target[:, None], -torch.inf)
        return masked.topk(classes, dim=1).indices
    ids = torch.as_tensor(classes, device=logits.device)
    if ids.dim() != 1 or len(ids) == 0 or ids.is_floating_point() or ids.dtype == torch.bool:
        raise TypeError(f"classes must be an int or a non-empty sequence of class ids, "
                        f"got {classes!r}")
    if (ids < 0).any() or (ids >= n).any():
        raise ValueError(f"classes {ids.tolist()} out of range for a model with {n} outputs")
    return ids.long()[None].expand(len(logits), -1)


#: Paths walked together, in chunks of the model's batch size: a few chunks' worth.
PATHS_PER_CHUNK = 4


def _walk(at: PointEvaluator, xp: Tensor, j: Tensor, i: Tensor, example: Tensor, steps: int,
          epsilon: float, dev) -> tuple[Tensor, Tensor, Tensor]:
    """FGSM-sign steps from each row of ``xp`` toward class ``j`` until the model predicts it
    (or ``steps``), integrating ``-grad f_i . step``: ``(attributions, f_i at the end, steps
    taken)`` per path. Cost: per step two forward+backward passes and one forward pass per
    active path, in the chunks of ``at``."""
    xp = xp.clone()
    attr = torch.zeros_like(xp)
    active = j != i
    taken = torch.zeros(len(j), dtype=torch.long, device=dev)
    for _ in range(steps):
        idx = active.nonzero()[:, 0]
        arrived = at.values(xp[idx], resolve_target(_predicted, len(idx), dev),
                            example[idx]).long() == j[idx]
        active[idx[arrived]] = False
        idx = idx[~arrived]
        if len(idx) == 0:
            break
        _, g = at.gradients(torch.cat([xp[idx], xp[idx]]),
                            resolve_target(torch.cat([j[idx], i[idx]]), 2 * len(idx), dev),
                            example[idx].repeat(2))
        step = epsilon * g[: len(idx)].sign()
        attr[idx] -= g[len(idx):] * step
        xp[idx] += step
        taken[idx] += 1
    f_end = at.values(xp, resolve_target(i, len(i), dev), example)
    return attr, f_end, taken


class AdversarialGradientIntegration(Explainer):
    """AGI: integrated gradients along adversarial paths toward false classes."""

    def attribute(
        self,
        x: Inputs,
        baselines: None = None,
        target: TargetSpec = None,
        *,
        epsilon: float = 0.05,
        steps: int = 20,
        classes: int | Sequence[int] | Tensor | None = None,
        batch_size: int | Literal["auto"] = "auto",
        additional_forward_args: tuple | None = None,
        forward_kwargs: dict | None = None,
        output: OutputSpec = None,
    ) -> Attribution:
        """Return AGI attributions (shape of ``x``) summed over the false classes, with
        ``delta = sum - sum_j (f_i(x) - f_i(x_end^j))``. ``target``: integer class indices
        (AGI needs a model returning ``(B, classes)``). ``epsilon`` is in input units.
        ``classes``: how many false classes (the highest-scoring ones), or their ids; default
        the paper's 10, or every false class of a model with fewer.
        ``info["steps_taken"]`` ``(B, k)`` counts the steps of each path.
        Cost: per example and false class at most ``steps`` rounds of two forward+backward
        passes (toward ``j`` and for ``f_i``) and one forward pass (the stopping check); all
        paths of all examples run as one batch.
        """
        check_steps(steps)
        check_number(epsilon, "epsilon", 0, low_open=True)
        if baselines is not None:
            raise TypeError("AGI takes no baselines: its paths are adversarial (pass target= "
                            "by keyword)")
        s = self.prepare(x, None, target, additional_forward_args, forward_kwargs, output)
        classes_of = s.target.classes  # AGI moves toward other classes: one class per example
        b = len(s.x)
        dev = s.x.device
        with guarded(self.model):
            at = s.evaluator(batch_size)
            bs = at.chunk(b)
            with torch.inference_mode():
                logits = torch.cat([s.call(s.x[i:i + bs], torch.arange(i, min(i + bs, b),
                                                                       device=dev))
                                    for i in range(0, max(b, 1), bs)])
            if logits.dim() != 2:
                raise ValueError(f"AGI needs model outputs of shape (batch, classes), got "
                                 f"{tuple(logits.shape)}")
            s.target.select(logits, torch.arange(b, device=dev))  # raises for a bad target
            false = _false_classes(logits, classes_of, classes)
            k = false.shape[1]
            j, i = false.flatten(), classes_of.repeat_interleave(k)
            example = torch.arange(b, device=dev).repeat_interleave(k)
            attr = torch.zeros_like(s.x)
            taken = torch.zeros(len(j), dtype=torch.long, device=dev)
            f_end = torch.zeros(len(j), dtype=logits.dtype, device=dev)
            # paths in groups of a few chunks: memory holds a group's points and attributions,
            # not B x k copies of the input (999 classes of four 64 x 64 images: 2.8 GB)
            group = PATHS_PER_CHUNK * bs
            for start in range(0, len(j), group):
                g = slice(start, start + group)
                a_g, f_end[g], taken[g] = _walk(at, s.x[example[g]], j[g], i[g], example[g],
                                                steps, epsilon, dev)
                attr.index_add_(0, example[g], a_g)
        f_x = logits.gather(1, classes_of[:, None])[:, 0]
        drop = (f_x.repeat_interleave(k) - f_end).where(j != i, 0.0).reshape(b, k).sum(1)
        return Attribution(s.structure(attr), attr.flatten(1).sum(1) - drop, None, None,
                           {"epsilon": epsilon, "steps": steps, "classes": false,
                            "steps_taken": taken.reshape(b, k), "path_output_drop": drop})
