"""Evaluation over a set of images: the AUCs are the metrics' own, the controls sit beside
each method, and the statistics call a winner only where the evidence is clear."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from pathattr import metrics
from pathattr.evaluation import RANDOM, Evaluator, write_evaluation


class Spot(nn.Module):
    """Class 1's logit is the brightness of a central 4 x 4 spot."""

    def __init__(self, size=12):
        super().__init__()
        self.w = torch.zeros(size, size)
        self.w[4:8, 4:8] = 1.0

    def forward(self, x):
        s = (x.mean(1) * self.w).sum((1, 2)) / self.w.sum() * 6
        return torch.stack([torch.full_like(s, 3.0), s], 1)


def images(n=10, size=12):
    g = torch.Generator().manual_seed(0)
    x = 0.3 * torch.rand(n, 3, size, size, generator=g)
    x[:, :, 4:8, 4:8] += 0.7
    return x


@pytest.fixture(scope="module")
def evaluated():
    model, x = Spot().eval(), images()
    g = torch.Generator().manual_seed(1)
    ev = Evaluator(model, ["true", "noise"], list(metrics_all()), pixels_per_step=8)
    per_image = []
    for i in range(len(x)):
        good = model.w.expand(3, -1, -1) + 0.05 * torch.rand(3, 12, 12, generator=g)
        noise = torch.rand(3, 12, 12, generator=g)
        per_image.append(ev.add(f"img{i}", x[i:i + 1], {"true": good, "noise": noise}, 1))
    return model, x, ev.result, per_image


def metrics_all():
    return ("insertion", "deletion", "road_morf", "road_lerf")


def test_aucs_are_the_metrics_own(evaluated):
    model, x, result, per_image = evaluated
    assert result.rows() == ["true", "true (inverse)", "noise", "noise (inverse)", RANDOM]
    assert "road_morf" not in result.auc["true (inverse)"]  # ROAD's control is LeRF
    g = torch.Generator().manual_seed(1)
    good = model.w.expand(3, -1, -1) + 0.05 * torch.rand(3, 12, 12, generator=g)
    t = torch.tensor([1])
    direct = {"insertion": metrics.insertion(model, x[:1], good[None], t, pixels_per_step=8),
              "deletion": metrics.deletion(model, x[:1], good[None], t, pixels_per_step=8),
              "road_morf": metrics.road(model, x[:1], good[None], t, order="morf"),
              "road_lerf": metrics.road(model, x[:1], good[None], t, order="lerf")}
    for m, c in direct.items():
        assert result.auc["true"][m][0] == pytest.approx(float(c.auc[0]), abs=1e-7)
    inverse = metrics.deletion(model, x[:1], good[None], t, pixels_per_step=8,
                               ranking="inverse")
    assert result.auc["true (inverse)"]["deletion"][0] == pytest.approx(float(inverse.auc[0]))
    # the mean curve is the mean of the images' curves
    mean = torch.stack([p["true"]["deletion"].scores[0] for p in per_image]).mean(0)
    torch.testing.assert_close(result.curves["true"]["deletion"].scores, mean.double())


def test_the_true_evidence_wins_where_the_interval_says_so(evaluated):
    _, _, result, _ = evaluated
    iv = result.intervals()
    for m in metrics_all():
        assert result.best(m) == "true"
        assert iv["true"][m].low <= iv["true"][m].mean <= iv["true"][m].high
    verdicts = {(c["metric"], c["method"], c["against"]): c["verdict"]
                for c in result.comparisons()}
    for m in metrics_all():
        assert verdicts[(m, "noise", "true")] == "worse"
        assert verdicts[(m, "true", RANDOM)] == "better"
    # the true map's inverse is a bad ranking: worse than the map itself on every image
    assert all(a < b for a, b in zip(result.auc["true (inverse)"]["insertion"],
                                     result.auc["true"]["insertion"]))


def test_written_json_and_html(evaluated, tmp_path):
    _, _, result, _ = evaluated
    result.completeness["true"] = [0.01 * (i + 1) for i in range(10)]  # as if measured
    page = write_evaluation(result, tmp_path, "spot", [("model", "Spot")])
    table = result.completeness_table()
    assert table.headers == ("image", "true |δ| / |ΔF|")  # "noise" has no gaps
    assert table.rows[-2] == ("mean", "5.50%") and table.rows[-1] == ("max", "10.00%")
    doc = json.loads((tmp_path / "evaluation.json").read_text())
    assert doc["inputs"] == result.inputs and len(doc["auc"]["true"]["insertion"]) == 10
    html = page.read_text()
    assert "Paired comparisons" in html and "random ranking" in html and "<img" in html
    assert "Completeness per image" in html
    auc, comp = result.tables()
    assert len(auc.rows) == 5 and all(len(r) == 10 for r in comp.rows)
    assert "Holm p" in comp.headers and "Power: 10 inputs decide" in html


def test_holm_within_each_metric(evaluated):
    _, _, result, _ = evaluated
    rows = result.comparisons()
    for m in result.metrics:
        family = [c for c in rows if c["metric"] == m]
        assert [c["p_holm"] for c in family] == pytest.approx(
            metrics.holm([c["p_value"] for c in family]))
        assert all(c["p_holm"] >= c["p_value"] for c in family)
        for c in family:  # the verdict reads the adjusted p-value
            assert (c["verdict"] == "no difference") == (
                c["p_holm"] >= 0.05 or c["difference"].low <= 0 <= c["difference"].high)


def test_bad_arguments():
    with pytest.raises(ValueError, match="metrics must be a non-empty list"):
        Evaluator(Spot(), ["a"], ["insertion", "ablation"])
    ev = Evaluator(Spot(), ["a"], ["deletion"], pixels_per_step=16)
    with pytest.raises(ValueError, match="no 'a'"):
        ev.add("x", images(1), {"b": torch.rand(3, 12, 12)}, 1)
    ev.add("x", images(1), {"a": torch.rand(3, 12, 12)}, 1)
    with pytest.raises(ValueError, match="curves over a set need one size"):
        ev.add("y", torch.rand(1, 3, 8, 8), {"a": torch.rand(3, 8, 8)}, 1)
    assert np.isfinite(ev.result.auc["a"]["deletion"]).all()
    # a batch of images is refused, not scored whole and recorded as its first image
    with pytest.raises(ValueError, match=r"one image \(1, C, H, W\) or signal \(1, C, L\) "
                                         r"per add, got \(2, 3, 12"):
        ev.add("z", images(2), {"a": torch.rand(2, 3, 12, 12)}, 1)
    assert ev.result.inputs == ["x"]


def test_comparisons_against_a_reference(evaluated):
    _, _, result, _ = evaluated
    rows = result.comparisons(reference="noise")
    assert {(c["method"], c["against"]) for c in rows} == {("noise", "true"),
                                                            ("noise", RANDOM)}
    assert all(c["verdict"] == "worse" for c in rows if c["against"] == "true")
    with pytest.raises(ValueError, match="reference 'ig' is not one of"):
        result.comparisons(reference="ig")


def test_an_evaluator_with_no_images_gives_empty_tables():
    ev = Evaluator(Spot(), ["a"], ["deletion"], pixels_per_step=16)
    auc, comp = ev.result.tables()
    assert auc.rows == [] and comp.rows == []


def test_the_auc_table_lists_the_best_first():
    from pathattr.evaluation import Evaluation

    ev = Evaluation(["a", "b"], ["deletion", "insertion"], ["x", "y"],
                    auc={"a": {"deletion": [0.5, 0.7], "insertion": [0.9, 0.9]},
                         "b": {"deletion": [0.1, 0.2], "insertion": [0.1, 0.2]},
                         RANDOM: {"deletion": [0.3, 0.3], "insertion": [0.5, 0.5]}})
    auc, _ = ev.tables()
    assert [row[0] for row in auc.rows] == ["b", RANDOM, "a"]  # lower deletion AUC is better


class Bump(nn.Module):
    """Signals (B, 1, 20): class 1's logit is the mean of samples 8..11."""

    def forward(self, x):
        s = x[:, 0, 8:12].mean(1) * 6
        return torch.stack([torch.full_like(s, 3.0), s], 1)


def test_signals_score_as_images_one_pixel_high():
    g = torch.Generator().manual_seed(2)
    x = 0.3 * torch.rand(4, 1, 20, generator=g)
    x[:, :, 8:12] += 0.7
    truth = torch.zeros(1, 20)
    truth[:, 8:12] = 1.0
    ev = Evaluator(Bump(), ["true"], list(metrics_all()), pixels_per_step=1)
    for i in range(len(x)):
        curves = ev.add(f"s{i}", x[i:i + 1], {"true": truth + 0.01 * torch.rand(1, 20,
                                                                            generator=g)}, 1)
    # the same scores as the image form by hand: (1, 1, 1, 20) through a squeezing model
    from pathattr.evaluation import Signals

    image = x[-1:, :, None]
    a = (truth + 0.0)[None, :, None]
    direct = metrics.deletion(Signals(Bump()), image, a, torch.tensor([1]), pixels_per_step=1)
    assert curves["true"]["deletion"].fractions.shape == direct.fractions.shape == (21,)
    assert float(curves["true"]["deletion"].scores[0, 4]) == pytest.approx(
        float(direct.scores[0, 4]), abs=1e-6)  # the 4 evidence samples gone first
    result = ev.result
    for m in ("deletion", "road_morf"):
        assert np.mean(result.auc["true"][m]) < np.mean(result.auc[RANDOM][m])
    for m in ("insertion", "road_lerf"):
        assert np.mean(result.auc["true"][m]) > np.mean(result.auc[RANDOM][m])
