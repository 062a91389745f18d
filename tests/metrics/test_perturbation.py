import math

import pytest
import torch
from torch import nn

from pathattr import metrics
from pathattr.baselines import gaussian_blur


class LinearProb(nn.Module):
    """Logits ``[w . x, 0]``: the class-0 probability is sigmoid(w . x), monotone in w . x, so
    pixel i matters by exactly ``w_i x_i`` against a zero baseline."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x):
        s = (x * self.w).flatten(1).sum(1)
        return torch.stack([s, torch.zeros_like(s)], 1)


def _setup(seed=0, b=2, h=4, w=4):
    g = torch.Generator().manual_seed(seed)
    weights = torch.rand(1, 1, h, w, generator=g) + 0.1
    x = torch.rand(b, 1, h, w, generator=g) + 0.5
    return LinearProb(weights), x


def test_true_ranking_is_best_and_reversed_worst():
    model, x = _setup()
    true = x * model.w.detach()
    g = torch.Generator().manual_seed(1)
    kw = dict(target=0, pixels_per_step=1)
    for fn, sign in ((metrics.deletion, 1), (metrics.insertion, -1)):
        sub = dict(substrate="baseline")
        best = fn(model, x, true, **kw, **sub).auc
        worst = fn(model, x, 1 / true, **kw, **sub).auc  # reversed: smallest first
        for _ in range(5):
            rand = fn(model, x, torch.rand(x.shape, generator=g), **kw, **sub).auc
            assert (sign * best <= sign * rand).all() and (sign * rand <= sign * worst).all()
        assert (sign * best < sign * worst).all()


def test_auc_matches_hand_computation():
    # two pixels, weights 2 and 1, x = 1: logits [w . x, 0]
    model = LinearProb(torch.tensor([[[[2.0], [1.0]]]]))
    x = torch.ones(1, 1, 2, 1)
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    d = metrics.deletion(model, x, model.w.detach().clone(), target=0, pixels_per_step=1)
    s = [sig(3), sig(1), sig(0)]
    assert torch.allclose(d.fractions, torch.tensor([0.0, 0.5, 1.0]))
    assert torch.allclose(d.scores, torch.tensor([s]))
    expected = 0.5 * (s[0] + s[1]) / 2 + 0.5 * (s[1] + s[2]) / 2
    assert d.auc.item() == pytest.approx(expected, rel=1e-6)
    i = metrics.insertion(model, x, model.w.detach().clone(), target=0, pixels_per_step=1,
                          substrate="baseline")
    assert torch.allclose(i.scores, torch.tensor([[sig(0), sig(2), sig(3)]]))


def test_uneven_last_step_and_default_target_is_prediction():
    model, x = _setup(h=4, w=4)
    c = metrics.deletion(model, x, torch.rand(x.shape), pixels_per_step=5)
    assert torch.allclose(c.fractions, torch.tensor([0, 5, 10, 15, 16]) / 16)
    assert c.scores.shape == (2, 5)
    # predicted class is 0 (w . x > 0): the curve starts at p(x) and ends at p(0) = 1/2
    p = model(x).softmax(-1)[:, 0]
    assert torch.allclose(c.scores[:, 0], p) and torch.allclose(c.scores[:, -1], torch.tensor(0.5))


def test_insertion_blur_runs_from_blurred_image_to_image():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(4, 5)).eval()
    x = torch.randn(2, 3, 16, 16)
    c = metrics.insertion(model, x, torch.randn(2, 16, 16), pixels_per_step=64, target=[1, 3])
    blurred = gaussian_blur(x, 5.0, 11)
    with torch.inference_mode():
        p0, p1 = model(blurred).softmax(-1), model(x).softmax(-1)
    assert torch.allclose(c.scores[:, 0], p0[[0, 1], [1, 3]], atol=1e-6)
    assert torch.allclose(c.scores[:, -1], p1[[0, 1], [1, 3]], atol=1e-6)


def test_batch_equals_one_at_a_time_and_model_untouched():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 8 * 8, 6)).eval()
    flags = [p.requires_grad for p in model.parameters()]
    x, a = torch.randn(3, 3, 8, 8), torch.randn(3, 3, 8, 8)
    for fn in (metrics.deletion, metrics.insertion):
        together = fn(model, x, a, pixels_per_step=7, batch_size=5)
        for i in range(3):
            alone = fn(model, x[i:i + 1], a[i:i + 1], pixels_per_step=7, batch_size=4)
            assert torch.allclose(alone.scores[0], together.scores[i], atol=1e-6)
            assert torch.allclose(alone.auc[0], together.auc[i], atol=1e-6)
    assert [p.requires_grad for p in model.parameters()] == flags
    assert not model.training
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


@pytest.mark.parametrize("kwargs, match", [
    (dict(attributions=torch.rand(2, 3, 4, 4)), "attributions has shape"),
    (dict(substrate="noise"), "substrate must be"),
    (dict(substrate="blur", baseline=torch.zeros(1, 4, 4)), "baseline is only used"),
    (dict(baseline=torch.zeros(3, 4, 4)), "baselines? has shape"),
    (dict(pixels_per_step=0), "pixels_per_step"),
    (dict(target=7), "target 7 is out of range"),
    # a 2-D input goes by features; the image model refuses it, and the error says what it got
    (dict(x=torch.rand(2, 16)), "model failed on what pathattr passed it .input 0: tensor .2, 16"),
])
def test_bad_input_names_the_argument(kwargs, match):
    model, x = _setup()
    args = dict(model=model, x=x, attributions=torch.rand(2, 1, 4, 4)) | kwargs
    with pytest.raises((ValueError, RuntimeError), match=match):  # the model's own: Runtime
        metrics.deletion(**args)


def test_training_mode_batchnorm_is_refused():
    model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(32, 2))
    with pytest.raises(ValueError, match="eval"):
        metrics.deletion(model, torch.rand(2, 1, 4, 4), torch.rand(2, 1, 4, 4))


def _manual_curve(f, x, sub, order_per_example, per_step, delete=True):
    """Probabilities written out by hand: change the ranked features k at a time."""
    out = []
    for i in range(len(x)):
        row, n = [], len(order_per_example[i])
        for k in list(range(0, n, per_step)) + [n]:
            z = x[i].clone() if delete else sub[i].clone()
            idx = order_per_example[i][:k]
            z.view(-1)[idx] = (sub[i] if delete else x[i]).reshape(-1)[idx]
            row.append(f(z[None])[0])
        out.append(row)
    return torch.tensor(out, dtype=torch.float64)


def test_tabular_deletion_and_insertion_by_feature():
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 3).double().eval()
    x = torch.randn(2, 6, dtype=torch.float64)
    attr = torch.tensor([[0.1, -3.0, 0.5, 2.0, 0.0, -0.2], [1.0, 2.0, 3.0, -4.0, 5.0, 6.0]],
                        dtype=torch.float64)
    order = [[1, 3, 2, 5, 0, 4], [5, 4, 3, 2, 1, 0]]

    def prob(z):
        return model(z).softmax(-1)[:, 2]

    for delete, fn in ((True, metrics.deletion), (False, metrics.insertion)):
        c = fn(model, x, attr, target=2, features_per_step=2)
        want = _manual_curve(prob, x, torch.zeros_like(x), order, 2, delete)
        torch.testing.assert_close(c.scores, want, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(c.fractions, torch.tensor([0, 1 / 3, 2 / 3, 1.0],
                                                             dtype=torch.float64))


def test_token_deletion_replaces_ids_keeps_the_attention_mask():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1,
                                  num_attention_heads=2, intermediate_size=20,
                                  max_position_embeddings=16, num_labels=3)
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(cfg).double().eval()
    ids = torch.randint(5, 40, (2, 6))
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0
    attr = torch.randn(2, 6, 16, dtype=torch.float64)  # e.g. LayerIG on the embeddings
    c = metrics.deletion(model, ids, attr, target=1, baseline=0, features_per_step=1,
                         forward_kwargs={"attention_mask": mask})
    order = attr.sum(-1).abs().argsort(dim=1, descending=True, stable=True).tolist()
    for i in range(2):
        def prob(z, i=i):
            return model(z, attention_mask=mask[i:i + 1]).logits.softmax(-1)[:, 1]
        want = _manual_curve(prob, ids[i:i + 1], torch.zeros_like(ids[i:i + 1]),
                             [order[i]], 1)
        torch.testing.assert_close(c.scores[i:i + 1], want, rtol=1e-12, atol=1e-14)


def test_feature_mask_groups_elements_and_bad_masks_are_named():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8, 2)).double().eval()
    x = torch.randn(1, 8, dtype=torch.float64)
    attr = torch.tensor([[1.0, 1.0, -5.0, 0.0, 0.2, 0.2, 3.0, 3.0]], dtype=torch.float64)
    mask = torch.tensor([[0, 0, 1, 1, 2, 2, 3, 3]])  # group scores |2|, |-5|, |0.4|, |6|
    c = metrics.deletion(model, x, attr, target=0, feature_mask=mask, features_per_step=1)
    elements = [6, 7, 2, 3, 0, 1, 4, 5]  # groups 3, 1, 0, 2
    want = _manual_curve(lambda z: model(z).softmax(-1)[:, 0], x, torch.zeros_like(x),
                         [elements], 2)
    torch.testing.assert_close(c.scores, want, rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="does not broadcast"):
        metrics.deletion(model, x, attr, target=0, feature_mask=torch.zeros(1, 3, dtype=int))
    with pytest.raises(TypeError, match="integer group ids"):
        metrics.deletion(model, x, attr, target=0, feature_mask=torch.zeros(1, 8))


@pytest.mark.parametrize("shape", [(20, 12), (20, 1, 4, 4)])  # by features, RISE's pixels
def test_inverse_and_random_rankings_are_the_controls(shape):
    torch.manual_seed(0)
    lin = nn.Linear(16 if len(shape) == 4 else 12, 2).double()
    model = nn.Sequential(nn.Flatten(), lin).eval()
    x = torch.rand(shape, dtype=torch.float64)
    with torch.no_grad():  # every feature raises class 0: |attribution| is the right order
        lin.weight[0] = lin.weight[1] + (lin.weight[0] - lin.weight[1]).abs()
    # exact attributions of the logit difference of a linear model, toward class 0
    w = (lin.weight[0] - lin.weight[1]).detach().reshape(shape[1:])
    attr = x * w
    kw = dict(target=0) if len(shape) == 2 else dict(target=0, pixels_per_step=1)
    if len(shape) == 2:
        kw["features_per_step"] = 1
    best = metrics.deletion(model, x, attr, **kw).auc
    worst = metrics.deletion(model, x, attr, ranking="inverse", **kw).auc
    rand = metrics.deletion(model, x, attr, ranking="random", **kw).auc
    assert (best < rand).all() and (rand < worst).all()
    again = metrics.deletion(model, x, attr, ranking="random", **kw).auc
    torch.testing.assert_close(again, rand)  # seeded
    with pytest.raises(ValueError, match="ranking must be"):
        metrics.deletion(model, x, attr, ranking="worst", **kw)
