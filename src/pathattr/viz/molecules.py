"""Atom and bond attributions drawn on the molecule with RDKit: red for a positive share of the
output change, blue for a negative one, white for none, on one scale per picture."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch import Tensor


def _colours(scores: np.ndarray, scale: float) -> list[tuple[float, float, float]]:
    from matplotlib import colormaps

    cmap = colormaps["RdBu_r"]
    rgb = [cmap(0.5 + 0.5 * float(s) / scale) for s in scores]
    return [(float(c[0]), float(c[1]), float(c[2])) for c in rgb]


def bond_scores(edge_index: Tensor, edge_scores: Tensor, n_bonds: int) -> np.ndarray:
    """``(bonds,)`` from directed-edge scores laid out as ``featurize`` lays them (bond ``k``
    at edges ``2k`` and ``2k + 1``): the two directions summed."""
    e = np.asarray(edge_scores.detach().double().cpu())
    if e.size != 2 * n_bonds:
        raise ValueError(f"edge_scores: expected {2 * n_bonds} directed edges (two per bond), "
                         f"got {e.size}")
    return e.reshape(n_bonds, 2).sum(1)


def molecule_png(molecule, atom_scores: Tensor | Sequence[float],
                 bond_values: Sequence[float] | np.ndarray | None = None,
                 size: tuple[int, int] = (360, 280), legend: str = "",
                 scale: float | None = None) -> bytes:
    """A PNG of ``molecule`` (SMILES or RDKit ``Mol``) with each atom (and bond) coloured by
    its score; ``scale``: the score drawn at full colour (default the largest magnitude).
    Returns the PNG bytes. Cost: one RDKit drawing."""
    from rdkit.Chem.Draw import rdMolDraw2D

    from ..zoo.molecules import to_mol

    mol = to_mol(molecule)
    a = np.asarray(getattr(atom_scores, "detach", lambda: atom_scores)(), dtype=np.float64)
    a = a.ravel()
    if a.size != mol.GetNumAtoms():
        raise ValueError(f"atom_scores: expected {mol.GetNumAtoms()} atoms, got {a.size}")
    b = None if bond_values is None else np.asarray(bond_values, dtype=np.float64).ravel()
    if b is not None and b.size != mol.GetNumBonds():
        raise ValueError(f"bond_values: expected {mol.GetNumBonds()} bonds, got {b.size}")
    if not np.isfinite(a).all() or (b is not None and not np.isfinite(b).all()):
        raise ValueError("atom_scores and bond_values must be finite")
    if scale is None:
        scale = max(np.abs(a).max(initial=0), np.abs(b).max(initial=0) if b is not None else 0)
    scale = scale or 1.0
    drawer = rdMolDraw2D.MolDraw2DCairo(*size)
    atoms = list(range(mol.GetNumAtoms()))
    options = {"highlightAtoms": atoms,
               "highlightAtomColors": dict(zip(atoms, _colours(a, scale))),
               "highlightAtomRadii": dict.fromkeys(atoms, 0.4)}
    if b is not None:
        bonds = list(range(mol.GetNumBonds()))
        options.update(highlightBonds=bonds,
                       highlightBondColors=dict(zip(bonds, _colours(b, scale))))
    else:
        options.update(highlightBonds=[])
    rdMolDraw2D.PrepareAndDrawMolecule(drawer, mol, legend=legend, **options)
    drawer.FinishDrawing()
    return drawer.GetDrawingText()
