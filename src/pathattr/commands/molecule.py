"""``pathattr explain --smiles SMILES``: atom and bond attributions of a molecular graph net —
admet-ai's pretrained Chemprop ensembles (``--model admet-ai:TASK``) or pathattr's own nets on
logS and Crippen logP (``molecule-logs``, ``molecule-crippen``) — drawn with RDKit."""

from __future__ import annotations

import json
import time
from pathlib import Path

from .. import registry
from ..files import make_dirs, text_folder, write_file
from . import UsageError

#: The zoo's molecular nets by command-line name: ``zoo.molecules.molecular_net``'s target.
OWN = {"molecule-logs": "logS", "molecule-crippen": "crippen_logp"}
DEFAULT_MODEL = "molecule-logs"
DEFAULT_METHODS = "ig,deeplift"
#: What a molecule can be explained with: input-space methods that are not for images only.
MOLECULE_METHODS = tuple(n for n, m in registry.METHODS.items()
                         if m.space == "input" and not m.images and n != "agi")


def molecule_methods(spec: str) -> list[str]:
    """``"ig,deeplift"`` -> names (``all``: every molecule method); ``UsageError`` naming an
    unknown one."""
    return registry.parse_methods(spec, MOLECULE_METHODS, "for molecules")


def load_molecule_model(name: str):
    """``(model, featurize, description)`` for ``--model NAME``; ``UsageError`` if unknown."""
    if name in OWN:
        from ..zoo import molecules

        target = OWN[name]
        return (molecules.molecular_net(target), molecules.featurize,
                f"pathattr's GINE net on {target} (zoo.molecules)")
    if name.startswith("admet-ai:"):
        from ..zoo import admet

        task = name.split(":", 1)[1]
        try:
            model = admet.admet_task(task)
        except ValueError as e:
            raise UsageError(f"--model: {e}") from None
        kind = "probability" if model.classification else "value"
        return model, admet.featurize, (f"admet-ai's Chemprop ensemble (5 D-MPNNs), task "
                                        f"{task}, its mean {kind}")
    raise UsageError(f"--model: {name!r} is not a molecule model; use admet-ai:TASK (e.g. "
                     f"admet-ai:AMES) or {', '.join(OWN)}")


def explain_molecule(smiles: str, model_name: str, methods: list[str], steps: int | str,
                     out: Path) -> tuple[list[str], Path]:
    """Attribute the model's output for ``smiles`` to its atoms and bonds with each method
    (zero baseline). Writes ``report.html``, ``atoms.json`` and one PNG per method to
    ``out/molecule/<FOLDER>/`` (named after the SMILES and model). Returns the terminal table
    and the report path. Cost: loading the model, then each method on one graph."""
    import torch

    from .. import viz
    from ..graphs import attribute_graphs
    from ..viz.molecules import bond_scores, molecule_png
    from ..zoo.molecules import to_mol

    if not smiles.strip():
        raise UsageError("--smiles: empty")
    try:
        mol = to_mol(smiles)
    except ValueError as e:
        raise UsageError(f"--{e}") from None
    model, featurize, about = load_molecule_model(model_name)
    data = featurize(mol)
    x, edge_index = data.x, data.edge_index
    if x is None or edge_index is None:
        raise ValueError(f"model {model_name!r}: its featuriser gave no node features or edges")
    with torch.no_grad():
        prediction = float(model(x, edge_index, data.edge_attr,
                                 torch.zeros(len(x), dtype=torch.long))[0, 0])
    panels, entries = [], {}
    symbols = [f"{a.GetSymbol()}{a.GetIdx()}" for a in mol.GetAtoms()]
    for name in methods:
        start = time.perf_counter()
        try:
            method, options = registry.parse_entry(name)
            r = attribute_graphs(model, data, method, target=0,
                                 **{**registry.step_options(method, steps), **options})
        except Exception as e:  # noqa: BLE001 -- one method failing is shown on its card
            panels.append(viz.MethodPanel(name, error=str(e).splitlines()[0][:300]))
            continue
        seconds = time.perf_counter() - start
        atoms = r.node_scores().detach()
        bonds = bond_scores(edge_index, r.edges.sum(-1).detach(), mol.GetNumBonds()) \
            if r.edges is not None else None
        png = molecule_png(mol, atoms, bonds, legend=name)
        delta = None if r.delta is None else float(r.delta[0])
        change = r.info.get("output_delta")
        relative = None if delta is None or change is None else \
            abs(delta) / max(abs(float(change[0])), 1e-12)
        panels.append(viz.MethodPanel(name, png, delta, relative, seconds,
                                      gap=registry.entry(name).gap))
        entries[name] = {"atoms": atoms.tolist(),
                         "bonds": None if bonds is None else bonds.tolist(),
                         "delta": delta, "seconds": seconds}
    directory = out / "molecule" / text_folder(smiles, model_name)
    make_dirs(directory)
    for p in panels:
        if p.png is not None:
            write_file(directory / f"{p.name}.png", p.png)
    write_file(directory / "atoms.json", json.dumps(
        {"smiles": smiles, "model": model_name, "prediction": prediction, "atoms": symbols,
         "methods": entries}, indent=1) + "\n")
    rows = [[s, *(f"{entries[m]['atoms'][i]:+.3g}" for m in entries)]
            for i, s in enumerate(symbols)]
    table = viz.Table(["atom", *entries], rows)
    report = viz.Report(
        title="pathattr: molecule",
        facts=[("molecule", smiles), ("model", about), ("prediction", f"{prediction:.4g}"),
               ("baseline", "all atom and bond features zero"), ("steps", str(steps))],
        input_png=molecule_png(mol, [0.0] * mol.GetNumAtoms()),
        methods=panels, sections=[("Atom attributions", None, [table])],
        methods_note="Red atoms and bonds raise the output, blue ones lower it (each picture "
                     "on its own scale). &delta; is the completeness gap: sum of attributions "
                     "minus F(x) &minus; F(baseline).")
    head = f"{smiles!r}: {about}: prediction {prediction:.4g}"
    gaps = "; ".join(f"{p.name}: {p.caption(short=True)}" for p in panels)
    return [head, table.text(), gaps], report.write(directory / "report.html")
