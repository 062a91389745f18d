import pytest
import torch
from torch import nn

import pathattr
from pathattr import metrics


def _mlp():
    """x (2,) -> h = relu(W x + b) (3 units) -> F = v . h, with hand-picked weights."""
    model = nn.Sequential()
    model.add_module("fc1", nn.Linear(2, 3))
    model.add_module("relu", nn.ReLU())
    model.add_module("fc2", nn.Linear(3, 1, bias=False))
    with torch.no_grad():
        model.fc1.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        model.fc1.bias.copy_(torch.tensor([0.5, 0.0, -0.5]))
        model.fc2.weight.copy_(torch.tensor([[1.0, -2.0, 3.0]]))
    return model.eval()


X = torch.tensor([[2.0, 1.0]])  # h = [2.5, 1, 2.5]; at x' = 0: h' = [0.5, 0, 0]


def test_reset_to_zero_removes_each_units_contribution():
    model = _mlp()
    scores = torch.tensor([[2.5, -2.0, 7.5]])  # v * h: unit 2, then 0, then 1
    c = metrics.neuron_ablation(model, X, "relu", scores, ks=[0, 1, 2, 3], reset="zero")
    # F(x) - F(ablated) = sum of v_j h_j over the reset units
    assert torch.allclose(c.scores, torch.tensor([[0.0, 7.5, 10.0, 8.0]]))
    assert torch.allclose(c.fractions, torch.tensor([0, 1, 2, 3]) / 3)
    assert torch.allclose(c.auc, torch.trapezoid(c.scores, c.fractions))


def test_reset_to_baseline_activation():
    model = _mlp()
    scores = torch.tensor([[0.0, 0.0, 1.0]])
    c = metrics.neuron_ablation(model, X, model.relu, scores, ks=[1], reset="baseline")
    assert torch.allclose(c.scores, torch.tensor([[3.0 * (2.5 - 0.0)]]))
    c = metrics.neuron_ablation(model, X, "relu", torch.tensor([[1.0, 0.0, 0.0]]), ks=[1],
                                baseline=torch.tensor([1.0, 5.0]))  # h'_0 = 1.5
    assert torch.allclose(c.scores, torch.tensor([[1.0 * (2.5 - 1.5)]]))


def test_true_scores_beat_random_control():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 4)).eval()
    x = torch.randn(5, 6)
    with torch.inference_mode():
        # the exact effect of zeroing each unit on logit 1
        contrib = model[1](model[0](x)) * model[2].weight[1]
    best = metrics.neuron_ablation(model, x, "1", contrib, target=1, reset="zero")
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        rand = metrics.neuron_ablation(model, x, "1", metrics.random_scores(x.shape[:1] + (32,), g),
                                       target=1, reset="zero")
        assert (best.auc >= rand.auc - 1e-6).all()
    assert len(best.fractions) == 21 and best.fractions[-1] == 1


def test_channel_scores_equal_whole_channel_neuron_scores_and_batching():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 5 * 5, 3)).eval()
    x = torch.randn(3, 2, 5, 5)
    ch = torch.randn(3, 4)
    by_channel = metrics.neuron_ablation(model, x, "1", ch, target=[0, 1, 2], ks=[0, 1, 2, 4],
                                         batch_size=5)
    neurons = ch[:, :, None, None].expand(3, 4, 5, 5)  # ties keep a channel's neurons together
    by_neuron = metrics.neuron_ablation(model, x, "1", neurons, target=[0, 1, 2],
                                        ks=[0, 25, 50, 100])
    assert torch.allclose(by_channel.scores, by_neuron.scores, atol=1e-5)
    alone = metrics.neuron_ablation(model, x[1:2], "1", ch[1:2], target=1, ks=[0, 1, 2, 4])
    assert torch.allclose(alone.scores[0], by_channel.scores[1], atol=1e-5)


def test_model_restored_even_on_error():
    model = _mlp()
    model.fc1.weight.requires_grad_(False)
    relu = nn.ReLU()
    twice = nn.Sequential(model, relu, relu).eval()  # a module called twice: ambiguous
    with pytest.raises(RuntimeError, match="executed 2 times"):
        metrics.neuron_ablation(twice, X, "1", torch.ones(1, 1), ks=[1])
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in twice.modules())
    assert [p.requires_grad for p in model.parameters()] == [False, True, True]


@pytest.mark.parametrize("kwargs, match", [
    (dict(scores=torch.ones(1, 4)), r"scores has shape \(1, 4\), expected \(1, 3\)"),
    (dict(ks=[0, 4]), r"ks must increase within \[0, 3\]"),
    (dict(ks=[2, 1]), "ks must increase"),
    (dict(ks=[0.5]), "ks must be a non-empty sequence of integers"),
    (dict(reset="mean"), "reset must be"),
    (dict(reset="zero", baseline=torch.zeros(2)), "baseline is only used"),
    (dict(layer="rleu"), "unknown layer 'rleu'; close names: relu"),
    (dict(baseline=torch.zeros(3)), "baselines? has shape"),
])
def test_bad_input_names_the_argument(kwargs, match):
    args = dict(model=_mlp(), x=X, layer="relu", scores=torch.ones(1, 3)) | kwargs
    with pytest.raises(ValueError, match=match):
        metrics.neuron_ablation(**args)


def test_token_ids_with_attention_mask():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1,
                                  num_attention_heads=2, intermediate_size=20, num_labels=3)
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(cfg).double().eval()
    ids = torch.randint(5, 40, (2, 6))
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0
    kw = {"forward_kwargs": {"attention_mask": mask}}
    layer = "bert.encoder.layer.0.output"
    lc = pathattr.LayerConductance(model, layer).attribute(ids, 0, target=2, steps=32, **kw)
    c = metrics.neuron_ablation(model, ids, layer, lc.attributions, target=2, ks=[0, 8, 96],
                                baseline=0, **kw)
    torch.testing.assert_close(c.scores[:, 0], torch.zeros(2, dtype=c.scores.dtype), rtol=0,
                               atol=1e-12)
    # resetting every unit to its baseline activation is the output change F(x) - F(x')
    torch.testing.assert_close(c.scores[:, -1], lc.info["output_delta"], rtol=1e-10,
                               atol=1e-12)
