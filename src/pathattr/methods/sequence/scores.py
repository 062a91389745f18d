"""What ``SequenceAttribution`` attributes for each target token: a score of the model's
next-token logits.

A score is any callable ``score(step: ScoreInputs) -> Tensor`` returning one value per row and
target, ``(n, T)``, differentiable in ``step.logits``. The built-in ones, by name:

- ``logit``: ``z_y``; ``logprob``: ``log p(y)``; ``probability``: ``p(y)`` (``prob`` is the
  same). With ``foil_ids`` each is the target's minus the foil's (``logprob`` then is the logit
  difference ``z_y - z_f``).
- ``contrast``: ``p(y | prompt) - p(f | contrast prompt)``, ``f`` the foil (default the target
  itself), Inseq's ``contrast_prob_diff``.
- ``kl``: ``KL(p(. | prompt) || p(. | contrast prompt))``, Inseq's ``kl_divergence``.
- ``entropy``: ``-sum_v p(v) log p(v)`` of the next-token distribution.

The contrast prompt's logits are a constant (one forward without gradients); the path moves
the prompt only. ``register_score(name, fn)`` adds a score under a name, which
``SequenceAttribution``, ``pathattr models`` and the command line's ``--score`` then offer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor


@dataclass
class ScoreInputs:
    """What a score reads, per row of a forward: ``logits`` ``(n, T, V)`` at the position
    that predicts each target, ``targets`` ``(n, T)`` their ids, ``foil`` ``(n, T)`` the
    foil ids (``foil_ids``) or None, ``contrast`` ``(n, T, V)`` the contrast prompt's logits
    for the same targets (``contrast_ids``) or None."""

    logits: Tensor
    targets: Tensor
    foil: Tensor | None = None
    contrast: Tensor | None = None


Score = Callable[[ScoreInputs], Tensor]


def _pick(t: Tensor, ids: Tensor) -> Tensor:
    return t.gather(2, ids[..., None])[..., 0]


def _minus_foil(values: Tensor, step: ScoreInputs) -> Tensor:
    picked = _pick(values, step.targets)
    return picked if step.foil is None else picked - _pick(values, step.foil)


def logit(step: ScoreInputs) -> Tensor:
    """``z_y`` (minus ``z_f`` with a foil)."""
    return _minus_foil(step.logits, step)


def logprob(step: ScoreInputs) -> Tensor:
    """``log p(y)`` (minus ``log p(f)`` with a foil)."""
    return _minus_foil(step.logits.log_softmax(-1), step)


def probability(step: ScoreInputs) -> Tensor:
    """``p(y)`` (minus ``p(f)`` with a foil)."""
    return _minus_foil(step.logits.softmax(-1), step)


def _contrast(step: ScoreInputs, name: str) -> Tensor:
    if step.contrast is None:
        raise ValueError(f"score {name!r} needs contrast_ids (the contrast prompt)")
    return step.contrast


def contrast(step: ScoreInputs) -> Tensor:
    """``p(y | prompt) - p(f | contrast prompt)`` (``f``: the foil, else the target)."""
    other = _contrast(step, "contrast").softmax(-1)
    theirs = _pick(other, step.targets if step.foil is None else step.foil)
    return _pick(step.logits.softmax(-1), step.targets) - theirs.to(step.logits.dtype)


def kl(step: ScoreInputs) -> Tensor:
    """``KL(p || q) = sum_v p(v) (log p(v) - log q(v))``, ``p`` the prompt's next-token
    distribution, ``q`` the contrast prompt's."""
    log_q = _contrast(step, "kl").log_softmax(-1).to(step.logits.dtype)
    log_p = step.logits.log_softmax(-1)
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def entropy(step: ScoreInputs) -> Tensor:
    """``-sum_v p(v) log p(v)`` of the next-token distribution."""
    log_p = step.logits.log_softmax(-1)
    return -(log_p.exp() * log_p).sum(-1)


SCORES: dict[str, Score] = {"logit": logit, "logprob": logprob, "probability": probability,
                            "contrast": contrast, "kl": kl, "entropy": entropy}
_ALIASES = {"prob": "probability"}
#: The built-ins whose gradient through the LM head is known in closed form (``_Head``).
HEAD_FORMS: dict[Score, str] = {logit: "logit", logprob: "logprob", probability: "prob"}


def register_score(name: str, fn: Score) -> None:
    """Offer ``fn`` as score ``name`` (``SequenceAttribution(...).attribute(score=name)``,
    ``--score name``, listed by ``pathattr models``). Raises ``ValueError`` for a name taken
    by a built-in or an alias, or a ``fn`` that is not callable."""
    if not isinstance(name, str) or not name or name in _ALIASES or \
            SCORES.get(name) in HEAD_FORMS or SCORES.get(name) in (contrast, kl, entropy):
        raise ValueError(f"score name {name!r} is empty or a built-in's")
    if not callable(fn):
        raise ValueError(f"score {name!r} must be callable, got {type(fn).__name__}")
    SCORES[name] = fn


def resolve_score(score: str | Score) -> tuple[str, Score]:
    """``(name, callable)`` of a score name or callable. Raises ``ValueError`` naming the
    known scores."""
    if callable(score):
        return getattr(score, "__name__", type(score).__name__), score
    name = _ALIASES.get(score, score) if isinstance(score, str) else score
    if not isinstance(name, str) or name not in SCORES:
        raise ValueError(f"score must be one of {', '.join(SCORES)} or a callable, got "
                         f"{score!r}")
    return name, SCORES[name]
