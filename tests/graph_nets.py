"""Small graph networks in PyTorch Geometric's convention, seeded, for the graph tests: a
graph-level readout over GCN, GIN, GAT and GINE (edge features) layers, and a directed
message-passing net (Chemprop's D-MPNN) written with ``index_add`` and ``index_select``."""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.data import Batch, Data
from torch_geometric.nn import (
    GATConv,
    GCNConv,
    GINConv,
    GINEConv,
    global_add_pool,
    global_mean_pool,
)

FEATURES, EDGE_FEATURES, HIDDEN, CLASSES = 5, 3, 12, 3


class GCN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = GCNConv(FEATURES, HIDDEN), GCNConv(HIDDEN, HIDDEN)
        self.out = nn.Linear(HIDDEN, CLASSES)

    def forward(self, x, edge_index, batch):
        x = self.conv1(x, edge_index).relu()
        x = self.conv2(x, edge_index).relu()
        return self.out(global_add_pool(x, batch))


def _mlp(a: int, b: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(a, b), nn.ReLU(), nn.Linear(b, b))


class GIN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = GINConv(_mlp(FEATURES, HIDDEN)), GINConv(_mlp(HIDDEN, HIDDEN))
        self.out = nn.Linear(HIDDEN, CLASSES)

    def forward(self, x, edge_index, batch):
        x = self.conv1(x, edge_index).relu()
        x = self.conv2(x, edge_index).relu()
        return self.out(global_mean_pool(x, batch))


class GAT(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = GATConv(FEATURES, HIDDEN // 2, heads=2)
        self.conv2 = GATConv(HIDDEN, HIDDEN, heads=1)
        self.out = nn.Linear(HIDDEN, CLASSES)

    def forward(self, x, edge_index, batch):
        x = self.conv1(x, edge_index).relu()
        x = self.conv2(x, edge_index).relu()
        return self.out(global_add_pool(x, batch))


class GINE(nn.Module):
    """Edge features enter every message (``edge_attr``)."""

    def __init__(self):
        super().__init__()
        self.conv1 = GINEConv(_mlp(FEATURES, HIDDEN), edge_dim=EDGE_FEATURES)
        self.conv2 = GINEConv(_mlp(HIDDEN, HIDDEN), edge_dim=EDGE_FEATURES)
        self.out = nn.Linear(HIDDEN, CLASSES)

    def forward(self, x, edge_index, edge_attr, batch):
        x = self.conv1(x, edge_index, edge_attr).relu()
        x = self.conv2(x, edge_index, edge_attr).relu()
        return self.out(global_add_pool(x, batch))


class DMPNN(nn.Module):
    """Chemprop's directed message passing: hidden states live on directed edges; the message
    into edge ``v -> w`` sums the states of the edges into ``v`` except ``w -> v``."""

    def __init__(self, depth: int = 3):
        super().__init__()
        self.w_i = nn.Linear(FEATURES + EDGE_FEATURES, HIDDEN, bias=False)
        self.w_h = nn.Linear(HIDDEN, HIDDEN, bias=False)
        self.w_o = nn.Linear(FEATURES + HIDDEN, HIDDEN)
        self.out = nn.Linear(HIDDEN, CLASSES)
        self.depth = depth

    def forward(self, x, edge_index, edge_attr, batch):
        src, dst = edge_index
        reverse = _reverse_edges(edge_index)
        h0 = self.w_i(torch.cat([x.index_select(0, src), edge_attr], 1)).relu()
        h = h0
        for _ in range(self.depth - 1):
            into = torch.zeros(len(x), h.shape[1], dtype=h.dtype).index_add(0, dst, h)
            m = into.index_select(0, src) - h[reverse]
            h = (h0 + self.w_h(m)).relu()
        node = torch.zeros(len(x), h.shape[1], dtype=h.dtype).index_add(0, dst, h)
        node = self.w_o(torch.cat([x, node], 1)).relu()
        return self.out(global_add_pool(node, batch))


def _reverse_edges(edge_index: torch.Tensor) -> torch.Tensor:
    """The position of each directed edge's reverse (the graphs are symmetric)."""
    n = int(edge_index.max()) + 1
    key = edge_index[0] * n + edge_index[1]
    rev = edge_index[1] * n + edge_index[0]
    order = torch.argsort(key)
    return order[torch.searchsorted(key[order], rev)]


NETS = {"gcn": GCN, "gin": GIN, "gat": GAT, "gine": GINE, "dmpnn": DMPNN}
EDGES = {"gine", "dmpnn"}


def random_graph(nodes: int, generator: torch.Generator) -> Data:
    """A connected symmetric graph (a ring plus chords), no self-loops, with features."""
    ring = torch.stack([torch.arange(nodes), (torch.arange(nodes) + 1) % nodes])
    extra = torch.randint(0, nodes, (2, nodes // 2), generator=generator)
    extra = extra[:, extra[0] != extra[1]]
    pairs = torch.cat([ring, extra], 1)
    edges = torch.unique(torch.cat([pairs, pairs.flip(0)], 1), dim=1)
    return Data(x=torch.randn(nodes, FEATURES, generator=generator), edge_index=edges,
                edge_attr=torch.rand(edges.shape[1], EDGE_FEATURES, generator=generator))


def graphs(sizes=(4, 7, 5), seed: int = 0, dtype=torch.float64) -> tuple[list[Data], Batch]:
    g = torch.Generator().manual_seed(seed)
    data = [random_graph(n, g) for n in sizes]
    for d in data:
        d.x, d.edge_attr = d.x.to(dtype), d.edge_attr.to(dtype)
    return data, Batch.from_data_list(data)


def net(name: str, dtype=torch.float64, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return NETS[name]().to(dtype).eval()


def call(model: nn.Module, name: str, x, edge_index, edge_attr, batch) -> torch.Tensor:
    """The plain forward, for references."""
    if name in EDGES:
        return model(x, edge_index, edge_attr, batch)
    return model(x, edge_index, batch)
