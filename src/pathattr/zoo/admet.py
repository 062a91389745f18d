"""ADMET-AI's pretrained Chemprop ensembles as graph models pathattr can attribute.

``admet-ai`` (MIT) ships two ensembles of five Chemprop directed message-passing nets (D-MPNN,
``chemprop``, MIT): 41 ADMET tasks — classification (AMES mutagenicity, hERG, the Tox21
assays, ...) and regression (solubility, lipophilicity, ...) — predicted offline. ``admet_task``
returns one task as an ``nn.Module`` in PyG's convention, ``forward(x, edge_index, edge_attr,
batch) -> (molecules, 1)``: the ensemble's mean prediction as admet-ai reports it (a
probability for classification, the unscaled value for regression), or with ``logits=True``
the mean of the five nets' logits. ``featurize`` gives Chemprop's own atom and bond features.
Needs the ``admet`` extra.
"""

from __future__ import annotations

from functools import cache
from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor, nn


@cache
def _ensembles() -> tuple[tuple[tuple[str, ...], tuple[nn.Module, ...]], ...]:
    """``((task names, five nets), ...)`` per ensemble, loaded once, in eval mode."""
    try:
        from admet_ai.constants import DEFAULT_MODELS_DIR
        from chemprop.models import load_model
        from chemprop.models.utils import load_output_columns
    except ImportError as e:
        raise ImportError("the ADMET models need admet-ai: pip install 'pathattr[admet]'") from e
    out = []
    for directory in sorted(DEFAULT_MODELS_DIR.iterdir()):
        paths = sorted(directory.glob("**/*.pt"))
        nets = tuple(load_model(p, multicomponent=False).eval() for p in paths)
        columns: Any = load_output_columns(paths[0])  # chemprop's stubs allow None
        out.append((tuple(columns), nets))
    return tuple(out)


def tasks() -> list[str]:
    """The 41 task names, as admet-ai names them (``AMES``, ``hERG``, ``Solubility_AqSolDB``)."""
    return [t for names, _ in _ensembles() for t in names]


def featurize(molecule, dtype: torch.dtype = torch.float32):
    """A PyG ``Data`` with Chemprop's features: ``x (atoms, 72)``, ``edge_index (2, 2 bonds)``
    (bond ``k`` at columns ``2k, 2k + 1``), ``edge_attr (2 bonds, 14)``."""
    from chemprop.featurizers import SimpleMoleculeMolGraphFeaturizer
    from torch_geometric.data import Data

    from .molecules import to_mol

    g = SimpleMoleculeMolGraphFeaturizer()(to_mol(molecule))
    return Data(x=torch.as_tensor(g.V, dtype=dtype),
                edge_index=torch.as_tensor(g.edge_index, dtype=torch.long),
                edge_attr=torch.as_tensor(g.E, dtype=dtype))


def reverse_edges(edge_index: Tensor) -> Tensor:
    """For each directed edge ``u -> v``, the position of ``v -> u`` (every bond has both)."""
    n = int(edge_index.max()) + 1 if edge_index.numel() else 1
    key = edge_index[0] * n + edge_index[1]
    order = torch.argsort(key)
    pos = torch.searchsorted(key[order], edge_index[1] * n + edge_index[0])
    rev = order[pos.clamp_max(len(order) - 1)]
    if not torch.equal(key[rev], edge_index[1] * n + edge_index[0]):
        raise ValueError("edge_index: every directed edge needs its reverse (Chemprop's bonds)")
    return rev


class ADMETTask(nn.Module):
    """One admet-ai task of a five-net Chemprop ensemble (see the module docstring)."""

    def __init__(self, task: str, logits: bool = False):
        super().__init__()
        for names, nets in _ensembles():
            if task in names:
                self.column = names.index(task)
                self.nets = nn.ModuleList(nets)
                break
        else:
            raise ValueError(f"task: unknown ADMET task {task!r}; known: {', '.join(tasks())}")
        self.task, self.logits = task, logits
        self.classification = not hasattr(self.nets[0].predictor, "output_transform") or \
            type(self.nets[0].predictor).__name__.startswith("BinaryClassification")

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor, batch: Tensor) -> Tensor:
        bmg = SimpleNamespace(V=x, E=edge_attr, edge_index=edge_index,
                              rev_edge_index=reverse_edges(edge_index), batch=batch)
        outs = []
        net: Any  # a chemprop MPNN: fingerprint, predictor
        for net in self.nets:
            z = net.fingerprint(bmg)
            if self.logits and self.classification:
                y = net.predictor.train_step(z)  # the logits, before the sigmoid
            else:
                y = net.predictor(z)
            outs.append(y[:, self.column:self.column + 1])
        return torch.stack(outs).mean(0)


def admet_task(task: str, logits: bool = False) -> ADMETTask:
    """The pretrained ensemble for ``task`` (e.g. ``"AMES"``), in eval mode. Cost: loading the
    ten nets once per process (about a second)."""
    return ADMETTask(task, logits).eval()
