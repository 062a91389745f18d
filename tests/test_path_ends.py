"""A path's ends must reproduce ``F(x')`` and ``F(x)``, and its output must not jump at the
baseline; otherwise the completeness check means nothing and pathattr refuses (``PathError``).
Recomputed from plain forwards of the model."""

import pytest
import torch
from torch import nn

import pathattr
from pathattr.errors import PathError

T = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def roberta():
    torch.manual_seed(0)
    cfg = T.RobertaConfig(vocab_size=40, hidden_size=16, intermediate_size=24,
                          num_hidden_layers=1, num_attention_heads=4, pad_token_id=1,
                          max_position_embeddings=20)
    return T.RobertaForSequenceClassification(cfg).double().eval()


def test_a_model_reading_ids_beyond_the_layer_is_refused_with_the_remedy(roberta):
    # RoBERTa derives position ids from the padding: the pad baseline moves the positions too
    ids = torch.randint(3, 40, (2, 6))
    for method in (pathattr.LayerIntegratedGradients(roberta, "roberta.embeddings.word_embeddings"),
                   pathattr.LayerConductance(roberta, "roberta.encoder.layer.0.output")):
        with pytest.raises(PathError, match="position_ids"):
            method.attribute(ids, 1, target=1, output="logits", steps=8)
    # the remedy: positions given explicitly, shared by both ends
    pos = torch.arange(2, 8).expand(2, -1)
    r = pathattr.LayerIntegratedGradients(roberta, "roberta.embeddings.word_embeddings").attribute(
        ids, 1, target=1, output="logits", steps="auto", forward_kwargs={"position_ids": pos})
    with torch.no_grad():
        d_f = roberta(ids, position_ids=pos).logits[:, 1] - \
            roberta(torch.ones_like(ids), position_ids=pos).logits[:, 1]
    torch.testing.assert_close(r.info["output_delta"], d_f)
    torch.testing.assert_close(r.delta, r.attributions.flatten(1).sum(1) - d_f)
    assert bool(r.info["converged"].all()) and (r.delta.abs() <= 0.01 * d_f.abs()).all()


class Normed(nn.Module):
    """LayerNorm straight on the input: scale-invariant on the open path from a zero baseline."""

    def __init__(self):
        super().__init__()
        self.norm, self.head = nn.LayerNorm(6, eps=1e-12), nn.Linear(6, 2)

    def forward(self, x):
        return self.head(torch.tanh(self.norm(x)))


@pytest.mark.parametrize("steps", [64, "auto"])
def test_a_jump_at_the_baseline_is_refused_not_integrated(steps):
    torch.manual_seed(0)
    m = Normed().double().eval()
    x = torch.randn(3, 6, dtype=torch.double)
    with pytest.raises(PathError, match="normalisation layer"):
        pathattr.IntegratedGradients(m).attribute(x, target=0, steps=steps)
    # a baseline the normaliser does not map to a single point: integrable, and complete
    base = 0.3 * torch.randn(3, 6, dtype=torch.double)
    r = pathattr.IntegratedGradients(m).attribute(x, base, target=0, steps="auto", tol=1e-3)
    with torch.no_grad():
        d_f = m(x)[:, 0] - m(base)[:, 0]
    assert (r.delta.abs() <= 1e-3 * d_f.abs()).all() and bool(r.info["converged"].all())


def test_converged_never_stands_next_to_a_gap_above_tol_in_bfloat16():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 2)).to(torch.bfloat16).eval()
    x = torch.randn(6, 8, dtype=torch.bfloat16)
    for tol in (1e-1, 1e-2, 1e-3):
        r = pathattr.IntegratedGradients(m).attribute(x, target=0, steps="auto", tol=tol)
        assert r.attributions.dtype == torch.float32  # sums kept in float32
        ok = r.delta.abs().double() <= tol * r.info["output_delta"].abs().double()
        assert not (r.info["converged"] & ~ok).any()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("method", ["idg", "left-ig", "ig", "deeplift"])
def test_every_per_token_method_runs_in_float32_and_bfloat16(method, dtype):
    torch.manual_seed(0)
    cfg = T.GPT2Config(vocab_size=40, n_embd=16, n_layer=1, n_head=2, n_positions=20)
    lm = T.GPT2LMHeadModel(cfg).to(dtype).eval()
    ids = torch.randint(3, 40, (1, 5))
    kw = {} if method == "deeplift" else {"steps": 16}
    r = pathattr.SequenceAttribution(lm, method=method).attribute(ids, max_new_tokens=2, **kw)
    assert r.scores.shape[:2] == (1, 2) and torch.isfinite(r.scores).all()
    if method != "deeplift":  # path sums kept in float32 for a half-precision model
        assert r.scores.dtype == torch.float32 and r.delta.dtype == torch.float32
    assert torch.isfinite(r.delta).all()


def test_sequence_inputs_are_checked_by_name():
    torch.manual_seed(0)
    cfg = T.GPT2Config(vocab_size=40, n_embd=16, n_layer=1, n_head=2, n_positions=12)
    lm = T.GPT2LMHeadModel(cfg).double().eval()
    sa = pathattr.SequenceAttribution(lm)
    ids = torch.tensor([[3, 4, 5, 6]])
    bad = [({"attention_mask": torch.tensor([[1, 2, 1, 1]])}, "only 0 and 1, got 2"),
           ({"attention_mask": torch.tensor([[1, -1, 1, 1]])}, "only 0 and 1, got -1"),
           ({"attention_mask": torch.zeros(1, 4, dtype=torch.long)}, "row 0 is all 0"),
           ({"target_ids": torch.tensor([[41]])}, "target_ids holds id 41, outside"),
           ({"target_ids": torch.tensor([[5]]), "foil_ids": -1}, "foil_ids holds id -1"),
           ({"target_ids": torch.tensor([[5]]), "foil_ids": torch.ones(2, 3, dtype=torch.long)},
            r"foil_ids must be one id or of shape \(1, 1\)"),
           ({"target_ids": torch.tensor([[5]]), "baselines": 99}, "baselines holds id 99"),
           ({"max_new_tokens": 9}, "max_new_tokens must be at most 8"),
           ({"max_new_tokens": 10**6}, "max_new_tokens must be at most 8")]
    for kwargs, message in bad:
        with pytest.raises(ValueError, match=message):
            sa.attribute(ids, **kwargs)
    with pytest.raises(ValueError, match="input_ids holds id 40"):
        sa.attribute(torch.tensor([[3, 40]]), max_new_tokens=1)
    with pytest.raises(ValueError, match="max_steps must be at most"):
        sa.attribute(ids, max_new_tokens=1, steps="auto", max_steps=10**7)
    with pytest.raises(ValueError, match="max_steps must be at most"):
        pathattr.IntegratedGradients(lambda t: t.sum(1, keepdim=True)).attribute(
            torch.ones(1, 3), target=0, steps="auto", max_steps=10**7)


@pytest.mark.parametrize("method", ["ig", "deeplift"])
def test_an_empty_batch_of_prompts_gives_an_empty_result_shaped_like_a_full_one(method):
    torch.manual_seed(0)
    cfg = T.GPT2Config(vocab_size=40, n_embd=16, n_layer=1, n_head=2, n_positions=20)
    lm = T.GPT2LMHeadModel(cfg).eval()
    sa = pathattr.SequenceAttribution(lm, method=method)
    kw = {} if method == "deeplift" else {"steps": 4}
    full = sa.attribute(torch.ones(1, 4, dtype=torch.long), max_new_tokens=2, **kw)
    empty = sa.attribute(torch.ones(0, 4, dtype=torch.long), max_new_tokens=2, **kw)
    for name in ("input_ids", "attention_mask", "target_ids", "scores", "delta"):
        a, b = getattr(full, name), getattr(empty, name)
        assert b.shape == (0, *a.shape[1:]) and b.dtype == a.dtype, name


def test_a_layer_method_on_an_empty_batch_the_model_cannot_run_names_x():
    cfg = T.BertConfig(vocab_size=40, hidden_size=16, intermediate_size=24,
                       num_hidden_layers=1, num_attention_heads=4)
    model = T.BertForSequenceClassification(cfg).eval()
    ids = torch.zeros(0, 5, dtype=torch.long)
    for method in (pathattr.LayerIntegratedGradients(model, "bert.embeddings.word_embeddings"),
                   pathattr.LayerConductance(model, "bert.encoder.layer.0.output")):
        with pytest.raises(ValueError, match="x is an empty batch, and the model cannot run on "
                                             "zero rows"):
            method.attribute(ids, 0, target=1, output="logits", steps=4)
