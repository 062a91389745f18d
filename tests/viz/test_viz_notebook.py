"""The rich displays Jupyter shows for results: self-contained HTML with the facts a user
looks for first (each example's gap, the maps, the AUC table)."""

import re

import torch
from torch import nn

import pathattr
from pathattr.evaluation import Evaluator


def cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Tanh(), nn.Flatten(),
                         nn.Linear(4 * 8 * 8, 3)).double().eval()


def test_attribution_shows_each_gap_and_map():
    x = torch.randn(2, 3, 8, 8, dtype=torch.double)
    r = pathattr.IntegratedGradients(cnn()).attribute(x, target=1, steps=8)
    page = r._repr_html_()
    assert "(2, 3, 8, 8) float64" in page and "<script" not in page
    assert page.count('src="data:image/png;base64,') == 2  # one map per example
    rel = r.relative_delta()
    assert f"{rel[0].item():.2%}" in page and f"{r.delta[1].item():+.3g}" in page
    plain = pathattr.Saliency(cnn()).attribute(x, target=1)._repr_html_()
    assert "<td>-</td>" in plain  # no gap to show: said, not a NaN


def test_sequence_result_and_evaluation_show_their_views():
    transformers = __import__("pytest").importorskip("transformers")
    cfg = transformers.GPT2Config(vocab_size=20, n_embd=8, n_layer=1, n_head=2, n_positions=16)
    torch.manual_seed(0)
    lm = transformers.GPT2LMHeadModel(cfg).eval()
    r = pathattr.SequenceAttribution(lm, method="deeplift").attribute(
        torch.tensor([[3, 4, 5]]), torch.tensor([[6, 7]]))
    page = r._repr_html_()
    assert "deeplift" in page and "(1, 2) targets" in page and "largest |&delta;|" in page
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 1
    model = cnn()
    x = torch.randn(2, 3, 8, 8, dtype=torch.double)
    ev = Evaluator(model, ["ig"], ("deletion",), controls=False, points=4)
    for i in range(2):
        a = pathattr.IntegratedGradients(model).attribute(x[i:i + 1], target=0, steps=4)
        ev.add(f"x{i}", x[i:i + 1], {"ig": a.attributions[0]}, 0)
    page = ev.result._repr_html_()
    assert "Evaluation</b> of 1 methods on 2 inputs" in page and "deletion AUC" in page
