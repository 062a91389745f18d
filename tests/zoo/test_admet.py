"""admet-ai's pretrained Chemprop ensembles as pathattr graph models: the same predictions as
admet-ai, IG complete per molecule, DeepLIFT summing to delta through directed message passing."""

import pytest
import torch

pytest.importorskip("admet_ai")

from torch_geometric.data import Batch  # noqa: E402

from pathattr.graphs import attribute_graphs  # noqa: E402
from pathattr.zoo import admet  # noqa: E402

SMILES = ["CCO", "c1ccccc1N", "O=C(O)c1ccccc1OC(C)=O", "CN1C=NC2=C1C(=O)N(C(=O)N2C)C"]


def _batch(dtype=torch.float32):
    return Batch.from_data_list([admet.featurize(s, dtype) for s in SMILES])


def _plain(model, b, x=None, e=None):
    with torch.no_grad():
        return model(b.x if x is None else x, b.edge_index,
                     b.edge_attr if e is None else e, b.batch)[:, 0]


@pytest.mark.slow
def test_the_tasks_predict_what_admet_ai_predicts():
    from admet_ai import ADMETModel

    assert len(admet.tasks()) == 41 and "AMES" in admet.tasks()
    reference = ADMETModel(num_workers=0).predict(smiles=SMILES)
    b = _batch()
    for task in ("AMES", "hERG", "Solubility_AqSolDB"):
        got = _plain(admet.admet_task(task), b)
        torch.testing.assert_close(got, torch.tensor(reference[task].to_numpy(),
                                                     dtype=torch.float32), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="unknown ADMET task 'AMEZ'"):
        admet.admet_task("AMEZ")


@pytest.mark.slow
@pytest.mark.parametrize("logits", [False, True])
def test_ig_and_deeplift_are_complete_per_molecule(logits):
    model = admet.admet_task("AMES", logits=logits)
    b = _batch()
    change = _plain(model, b) - _plain(model, b, torch.zeros_like(b.x),
                                       torch.zeros_like(b.edge_attr))
    ig = attribute_graphs(model, b, "ig", target=0, steps="auto", tol=1e-3)
    assert (ig.delta.abs() <= 1e-3 * change.abs() + 1e-6).all()
    dl = attribute_graphs(model, b, "deeplift", target=0)
    total = torch.zeros(len(SMILES)).index_add(0, b.batch, dl.node_scores()).index_add(
        0, b.batch[b.edge_index[0]], dl.edge_scores())
    assert ((total - change).abs() <= 1e-5 * change.abs().clamp_min(1)).all()
    if logits:  # a logit: the probability's sigmoid taken off
        assert (change.abs() > 0).all()


@pytest.mark.slow
def test_deeplift_sums_to_delta_in_float64():
    model = admet.admet_task("Solubility_AqSolDB").double()
    b = _batch(torch.float64)
    change = _plain(model, b) - _plain(model, b, torch.zeros_like(b.x),
                                       torch.zeros_like(b.edge_attr))
    dl = attribute_graphs(model, b, "deeplift", target=0)
    assert (dl.delta.abs() <= 1e-10 * change.abs().clamp_min(1)).all()
    assert torch.allclose(dl.delta, dl.node_scores(edges=True).new_zeros(len(SMILES)).index_add(
        0, b.batch, dl.node_scores(edges=True)) - change, atol=1e-10)


def test_reverse_edges():
    ei = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
    assert admet.reverse_edges(ei).tolist() == [1, 0, 3, 2]
    with pytest.raises(ValueError, match="needs its reverse"):
        admet.reverse_edges(torch.tensor([[0], [1]]))
