"""``SequenceAttribution``'s scores (``methods/sequence/scores.py``): each built-in is the
formula computed here by hand on plain forwards (the contrastive ones as Inseq defines its step
functions ``contrast_prob_diff`` and ``kl_divergence``), and the attributions of every score
sum to its change along the path."""

import pytest
import torch
import torch.nn.functional as F

import pathattr
from pathattr.cli import main
from pathattr.methods.sequence import SCORES, ScoreInputs, register_score
from pathattr.methods.sequence.scores import logprob

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def lm():
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=40,
                                     n_positions=32)
    return transformers.GPT2LMHeadModel(config).double().eval()


IDS = torch.tensor([[5, 9, 13, 2], [7, 11, 3, 8]])
TARGETS = torch.tensor([[3, 17, 21], [6, 6, 30]])
FOIL = torch.tensor([[4, 4, 4], [9, 1, 2]])
CONTRAST = torch.tensor([[5, 9, 12], [1, 11, 3]])


def next_logits(lm, prompt, targets):
    """The logits predicting each target after ``prompt``: a plain forward."""
    with torch.no_grad():
        out = lm(torch.cat([prompt, targets], 1)).logits
    p = prompt.shape[1]
    return out[:, p - 1:p - 1 + targets.shape[1]]


def by_hand(name, z, zc):
    """Each score's formula on logits ``z`` (and the contrast prompt's ``zc``)."""
    y = TARGETS[..., None]
    logp = z.log_softmax(-1)
    return {
        "logit": z.gather(2, y)[..., 0] - z.gather(2, FOIL[..., None])[..., 0],
        "logprob": (logp.gather(2, y) - logp.gather(2, FOIL[..., None]))[..., 0],
        "probability": (logp.exp().gather(2, y) - logp.exp().gather(2, FOIL[..., None]))[..., 0],
        # Inseq's contrast_prob_diff: p(target | input) - p(contrast target | contrast input)
        "contrast": z.softmax(-1).gather(2, y)[..., 0] - zc.softmax(-1).gather(
            2, FOIL[..., None])[..., 0],
        # Inseq's kl_divergence: F.kl_div(contrast log-probs, original log-probs, log_target)
        "kl": F.kl_div(zc.log_softmax(-1), logp, reduction="none", log_target=True).sum(-1),
        "entropy": torch.distributions.Categorical(logits=z).entropy(),
    }[name]


@pytest.mark.parametrize("name", ["logit", "logprob", "probability", "contrast", "kl",
                                  "entropy"])
def test_each_score_is_its_formula_and_the_attributions_sum_to_its_change(lm, name):
    foil = FOIL if name in ("logit", "logprob", "probability", "contrast") else None
    contrast = CONTRAST if name in ("contrast", "kl") else None
    r = pathattr.SequenceAttribution(lm).attribute(
        IDS, TARGETS, baselines=0, score=name, foil_ids=foil, contrast_ids=contrast,
        steps=64)
    zc = next_logits(lm, CONTRAST, TARGETS)
    hand = by_hand(name, next_logits(lm, IDS, TARGETS), zc)
    # the baseline: every position's embedding that of id 0; the targets scored are the same
    base = by_hand(name, next_logits(lm, torch.zeros_like(IDS), torch.zeros_like(TARGETS)), zc)
    torch.testing.assert_close(r.info["output_delta"], hand - base, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(r.scores.sum(-1) - r.info["output_delta"], r.delta, rtol=0,
                               atol=1e-12)
    assert (r.delta.abs() <= 1e-3 * r.info["output_delta"].abs() + 1e-9).all()
    assert r.info["score"] == name


def test_the_head_closed_form_equals_autograd(lm):
    """``logprob`` takes the LM head's closed-form gradient; the same function as an
    unregistered callable takes autograd's: the same attributions."""
    fast = pathattr.SequenceAttribution(lm).attribute(IDS, TARGETS, foil_ids=FOIL,
                                                      score="logprob", steps=8)
    plain = pathattr.SequenceAttribution(lm).attribute(IDS, TARGETS, foil_ids=FOIL,
                                                       score=lambda s: logprob(s), steps=8)
    torch.testing.assert_close(fast.scores, plain.scores, rtol=1e-10, atol=1e-12)


def test_a_callable_and_a_registered_score(lm, capsys):
    def margin(step: ScoreInputs) -> torch.Tensor:
        return step.logits[..., 5] - step.logits[..., 7]

    r = pathattr.SequenceAttribution(lm).attribute(IDS, TARGETS, score=margin, steps="auto",
                                                   tol=1e-4)
    z, z0 = next_logits(lm, IDS, TARGETS), next_logits(lm, torch.zeros_like(IDS),
                                                        torch.zeros_like(TARGETS))
    torch.testing.assert_close(r.info["output_delta"], (z[..., 5] - z[..., 7])
                               - (z0[..., 5] - z0[..., 7]), rtol=1e-9, atol=1e-12)
    assert r.info["score"] == "margin"
    register_score("margin57", margin)
    try:
        again = pathattr.SequenceAttribution(lm).attribute(IDS, TARGETS, score="margin57",
                                                           steps="auto", tol=1e-4)
        torch.testing.assert_close(again.scores, r.scores, rtol=0, atol=0)
        assert main(["models"]) == 0
        assert "margin57" in capsys.readouterr().out
    finally:
        SCORES.pop("margin57")
    with pytest.raises(ValueError, match="built-in"):
        register_score("kl", margin)


def test_bad_scores_are_refused(lm, capsys):
    sa = pathattr.SequenceAttribution(lm)
    with pytest.raises(ValueError, match="one value per row and target, shape"):
        sa.attribute(IDS, TARGETS, score=lambda s: s.logits[:, 0, 0], steps=4)
    with pytest.raises(ValueError, match="'kl' needs contrast_ids"):
        sa.attribute(IDS, TARGETS, score="kl", steps=4)
    with pytest.raises(ValueError, match="score must be one of logit, logprob"):
        sa.attribute(IDS, TARGETS, score="margin", steps=4)
    with pytest.raises(ValueError, match="contrast_ids must have 2 rows"):
        sa.attribute(IDS, TARGETS, score="kl", contrast_ids=CONTRAST[:1], steps=4)
    assert main(["explain", "--text", "a", "--generate", "1", "--score", "nope"]) == 2
    assert "--score: one of logit" in capsys.readouterr().err
    assert main(["explain", "photo:chelsea", "--score", "kl"]) == 2
    assert "--score: only with --generate" in capsys.readouterr().err
