"""Smoke tests of the reproductions at tiny sizes (``quick=True``): files written, numbers sane.
The full runs are commands (``pathattr reproduce NAME``), not tests."""

import json
import math

import pytest
import torch

from pathattr.experiments import __main__ as entry
from pathattr.experiments import idg, ig, neurons


def _load(doc, out):
    for name in doc["files"]:
        assert (out / name).stat().st_size > 0, name
    assert any(n.endswith(".png") for n in doc["files"])
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["versions"]["torch"] and on_disk["settings"]
    return on_disk["numbers"]


def test_ig_quick(tmp_path):
    out = tmp_path / "ig"
    n = _load(ig.run(out, quick=True), out)
    digits = n["models"]["digits CNN"]
    gl = [abs(v) for v in digits["gaps"]["gausslegendre"][0]]
    assert gl[-1] < gl[0]  # more Gauss-Legendre steps, smaller completeness gap
    (f,) = n["findings"]
    assert f["gl_error_first_last"][1] < f["gl_error_first_last"][0]
    assert digits["api_cross_check_max_diff"] < 1e-4  # the sweep is what IG reports
    assert f["auto_all_converged"] and f["auto_max_gap"] <= 0.01
    worst = n["axioms_max_violation"]
    for axiom in ("implementation_invariance", "linearity", "symmetry", "dummy"):
        assert worst[axiom] < 1e-9, axiom
    assert worst["completeness"] < 0.1 and worst["sensitivity"] < 0.1
    assert "| gausslegendre |" in (out / "README.md").read_text()


def test_neurons_quick(tmp_path):
    out = tmp_path / "neurons"
    n = _load(neurons.run(out, quick=True), out)
    res = n["models"]["digits CNN"]
    gaps = [row["dhamdhere"][-1]["max_diff_over_output_delta"] for row in res["agreement"]]
    assert gaps[-1] < 0.01 and gaps[-1] < gaps[0]  # the two forms converge together
    aucs = {m: sum(c["auc"]) / len(c["auc"]) for m, c in res["ablation"].items()}
    assert all(math.isfinite(a) for a in aucs.values())
    assert max(v for m, v in aucs.items() if m.startswith("Neuron IG")) > aucs["random"]
    assert set(n["verdicts"]["digits CNN"]) >= {"DeepLIFT Rescale", "DeepLIFT RevealCancel"}


def test_idg_quick(tmp_path):
    out = tmp_path / "idg"
    n = _load(idg.run(out, quick=True), out)
    res = n["models"]["digits-cnn"]
    assert res["methods"] == list(idg.QUICK["methods"])
    rows = {*idg.QUICK["methods"], *(m + " (inverse)" for m in idg.QUICK["methods"]),
            "random ranking"}
    assert set(res["auc"]) == rows
    for m in idg.QUICK["methods"]:
        for kind in idg.QUICK["metrics"]:
            assert len(res["auc"][m][kind]) == 6 and all(0 <= a <= 1 for a in res["auc"][m][kind])
            iv = res["intervals"][m][kind]
            assert iv["low"] <= iv["mean"] <= iv["high"]
        assert res["seconds_per_image"][m] >= 0
    against = {c["against"] for c in res["comparisons"]}
    assert against == {"IG", "left-IG", "random ranking"}
    assert set(res["verdict"]) == set(idg.QUICK["metrics"])
    text = (out / "README.md").read_text()
    assert "IDG (adaptive) against each method" in text and "Wilcoxon" in text


def test_module_entry_runs_the_named_experiment(tmp_path, monkeypatch, capsys):
    calls = []

    def fake_run(out_dir, quick=False):
        calls.append((out_dir, quick))
        out_dir.mkdir(parents=True)
        (out_dir / "README.md").write_text("# report\n")
        return {"files": ["README.md"], "seconds": 0.0}

    monkeypatch.setattr(neurons, "run", fake_run)
    assert entry.main(["neurons", "--quick", "--out", str(tmp_path / "n")]) == 0
    assert calls == [(tmp_path / "n", True)]
    assert "# report" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        entry.main(["nonsense"])


def test_cli_reproduce_writes_results(tmp_path, capsys):
    from pathattr import cli
    assert cli.main(["reproduce", "ig", "--quick", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "README.md").exists() and (tmp_path / "results.json").exists()
    assert cli.main(["reproduce", "nothing"]) == 2


@pytest.mark.parametrize("data, model", [("digits", "digits-cnn"), ("mnist1d", "mnist1d-cnn")])
def test_idg_quick_on_held_out_data(tmp_path, data, model):
    out = tmp_path / data
    n = _load(idg.run(out, quick=True, data=data, inputs=7), out)
    res = n["models"][model]
    assert len(res["inputs"]) == 7 and res["inputs"][:2] == ["test #0", "test #1"]
    assert 0.5 < res["accuracy"] <= 1
    for c in res["comparisons"]:
        assert c["p_holm"] >= c["p_value"] and c["inputs_needed"] >= 6
    for v in res["verdict"].values():
        assert v["claim"] in ("holds", "does not hold", "cannot be decided")
        assert set(v["inputs_needed"]) == set(v["no_difference"])
    text = (out / "README.md").read_text()
    assert "held-out" in text and "Power: 7 inputs decide" in text and "Holm" in text


def test_idg_settings_refuse_bad_data_and_inputs(tmp_path):
    with pytest.raises(ValueError, match="data must be one of photos, digits, mnist1d"):
        idg.settings("imagenet", False, None)
    with pytest.raises(ValueError, match="inputs must be an integer >= 2"):
        idg.settings("digits", False, 1)
    s = idg.settings("digits", False, None)
    assert s["inputs"] == 300 and "IDGI" in s["methods"] and s["pixels_per_step"] == 1
    with pytest.raises(SystemExit):
        entry.main(["ig", "--data", "digits", "--out", str(tmp_path / "x")])


def test_each_idg_method_name_runs_its_own_method():
    import torch

    from pathattr.methods.idg import IntegratedDecisionGradients
    from pathattr.methods.idgi import IDGI
    from pathattr.zoo import digits_cnn, digits_data

    model, x = digits_cnn(), digits_data()[2][:2]
    t = model(x).argmax(1)
    s = idg.settings("digits", False, None)
    got = {m: idg.attribute(m, model, x, t, s) for m in ("IDGI", "IDG (adaptive)")}
    torch.testing.assert_close(got["IDGI"], IDGI(model).attribute(x, target=t, steps=50)
                               .attributions)
    torch.testing.assert_close(got["IDG (adaptive)"], IntegratedDecisionGradients(model)
                               .attribute(x, target=t, steps=50).attributions)
    assert not torch.allclose(got["IDGI"], got["IDG (adaptive)"])



@pytest.mark.slow
def test_molecules_ig_beats_the_shuffled_control_on_crippen():
    """The one claim asserted: on all 257 held-out molecules, IG's atom scores of the Crippen
    twin track Crippen's contributions better than the same scores shuffled among atoms."""
    pytest.importorskip("torch_geometric")
    from torch_geometric.data import Batch

    from pathattr.experiments import molecules
    from pathattr.zoo.molecules import (
        crippen_contributions,
        crippen_net,
        featurize,
        solubility_molecules,
    )

    smiles = [m for m, _ in solubility_molecules("test")]
    batch = Batch.from_data_list([featurize(m) for m in smiles])
    truth = torch.cat([crippen_contributions(m) for m in smiles])
    res = molecules.faithfulness(crippen_net(), batch, truth, ("ig",), seed=0)["ig"]
    assert res["molecules"] > 200
    assert res["verdict"] == "a > b" and res["minus_control_low"] > 0.1
    assert res["pooled_r"] > 0.3 and abs(res["control_r"]) < 0.1


def test_molecules_quick(tmp_path):
    pytest.importorskip("torch_geometric")
    from pathattr.experiments import molecules

    out = tmp_path / "molecules"
    n = _load(molecules.run(out, quick=True), out)
    assert set(n["faithfulness"]) == set(molecules.QUICK["methods"])
    assert (out / "molecules.png").stat().st_size > 10_000
    gaps = n["completeness"]
    assert gaps["32"]["median"] < gaps["8"]["median"]
    # DeepLIFT sums to delta on every molecule (float32 rounding only)
    assert n["faithfulness"]["deeplift"]["max_abs_gap"] < 1e-3


def test_translation_quick(tmp_path):
    pytest.importorskip("cn2en")
    from pathattr.experiments import translation

    out = tmp_path / "translation"
    n = _load(translation.run(out, quick=True), out)
    assert set(n["alignment"]) == {"ig", "deeplift"}
    gaps = n["completeness"]
    assert gaps["32"]["median"] < gaps["8"]["median"] and gaps["auto"]["max"] <= 0.01


@pytest.mark.slow
def test_ig_aligns_translated_words_with_their_source_characters():
    """On every written-down alignment, IG's top source character beats chance by far."""
    pytest.importorskip("cn2en")
    from pathattr.experiments import translation
    from pathattr.metrics.statistics import bootstrap
    from pathattr.zoo.translation import cn2en

    res, (chance, pairs) = translation.alignment(cn2en(), ("ig",), translation.GOLD, 0.01)
    assert len(pairs) >= 35
    ci = bootstrap(res["ig"]["hits"], seed=0)
    assert ci.low > float(sum(chance) / len(chance)) + 0.3


def test_ig_runs_the_papers_other_applications_into_subfolders(tmp_path):
    pytest.importorskip("torch_geometric")
    pytest.importorskip("cn2en")
    apps = ig.other_applications(tmp_path, quick=True)
    assert set(apps) == {"molecules", "translation"}
    assert (tmp_path / "molecules" / "README.md").exists()
    assert (tmp_path / "translation" / "README.md").exists()
    text = ig._applications(apps)
    assert "Crippen" in text and "written-down translation" in text
