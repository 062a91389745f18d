"""Graphs as inputs: PyTorch Geometric's node-major batches, attributed per graph.

A graph network takes node features ``x (N, F)`` of all graphs at once, ``edge_index (2, E)``
and ``batch (N,)`` (each node's graph), and perhaps edge features ``edge_attr (E, Fe)``. For the
path engine a *graph* is the example: ``Graphs.padded`` gives each graph's node (and edge)
features as one row, ``(G, most nodes, F)``, and ``GraphModel`` turns any batch of such rows —
path points of several graphs at several alphas — back into one disconnected PyG batch, each
row its own copy of its graph's edges. Rows never share an edge, so a batch of graphs is
attributed exactly as graph by graph, every method works unchanged, and each graph has its own
completeness gap (``steps="auto"`` controls each one). Padding entries are not read by the
model: their attribution is exactly zero, and ``GraphAttribution`` drops them.

Layers inside the network see node-major tensors; ``GraphModel`` declares the layout
(``layers.row_layout``), so layer methods (LayerIG, conductance) see them as
``(rows, most nodes, d)``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .forward import per_example
from .layers import RowLayout, row_layout
from .result import Attribution
from .validate import check_tensor

#: ``forward(model, x, edge_index, edge_attr, batch) -> output``: how to call a model whose
#: signature ``GraphModel`` cannot read.
GraphForward = Callable[[nn.Module, Tensor, Tensor, "Tensor | None", Tensor], Any]


@dataclass
class Graphs:
    """One graph or a batch of graphs in PyG's layout, with each graph's nodes and edges.

    Build it with ``Graphs.of(data)`` from a PyG ``Data``/``Batch`` or from tensors."""

    x: Tensor
    edge_index: Tensor
    batch: Tensor
    edge_attr: Tensor | None = None
    num_graphs: int = field(init=False)
    node_counts: Tensor = field(init=False)
    edge_counts: Tensor = field(init=False)
    #: each node's (edge's) position among its graph's nodes (edges), in the given order
    node_local: Tensor = field(init=False)
    edge_local: Tensor = field(init=False)
    edge_graph: Tensor = field(init=False)

    @classmethod
    def of(cls, data: Any = None, *, x: Tensor | None = None,
           edge_index: Tensor | None = None, edge_attr: Tensor | None = None,
           batch: Tensor | None = None) -> Graphs:
        """From a PyG ``Data``/``Batch`` (anything with ``x`` and ``edge_index``, optional
        ``edge_attr`` and ``batch``) or from the tensors; no ``batch`` means one graph."""
        if data is not None:
            x, edge_index = getattr(data, "x", None), getattr(data, "edge_index", None)
            edge_attr, batch = getattr(data, "edge_attr", None), getattr(data, "batch", None)
        if batch is None and isinstance(x, Tensor):
            batch = torch.zeros(len(x), dtype=torch.long, device=x.device)
        # __post_init__ checks each tensor and names the one that is missing or malformed
        return cls(x, edge_index, batch, edge_attr)  # pyright: ignore[reportArgumentType]

    def __post_init__(self):
        self.x = check_tensor(self.x, "x")
        if self.x.dim() != 2:
            raise ValueError(f"x: node features must be (nodes, features), got shape "
                             f"{tuple(self.x.shape)}")
        n = len(self.x)
        ei = self.edge_index
        if not isinstance(ei, Tensor) or ei.dim() != 2 or ei.shape[0] != 2 \
                or ei.is_floating_point():
            raise ValueError(f"edge_index must be an integer tensor (2, edges), got "
                             f"{tuple(ei.shape) if isinstance(ei, Tensor) else type(ei).__name__}")
        b = self.batch
        if not isinstance(b, Tensor) or b.shape != (n,) or b.is_floating_point():
            raise ValueError(f"batch must be an integer tensor (nodes,) = ({n},), got "
                             f"{tuple(b.shape) if isinstance(b, Tensor) else type(b).__name__}")
        if ei.numel() and (int(ei.min()) < 0 or int(ei.max()) >= n):
            raise ValueError(f"edge_index: node indices must lie in [0, {n}), got "
                             f"[{int(ei.min())}, {int(ei.max())}]")
        if n and int(b.min()) < 0:
            raise ValueError("batch: graph indices must be >= 0")
        self.num_graphs = int(b.max()) + 1 if n else 0
        self.node_counts = torch.bincount(b, minlength=self.num_graphs)
        if n and bool((self.node_counts == 0).any()):
            empty = int((self.node_counts == 0).nonzero()[0])
            raise ValueError(f"batch: graph {empty} has no nodes (graph indices must run "
                             f"0..G-1 without gaps)")
        self.edge_graph = b[ei[0]] if ei.numel() else ei.new_zeros(0)
        if ei.numel() and not torch.equal(self.edge_graph, b[ei[1]]):
            bad = int((self.edge_graph != b[ei[1]]).nonzero()[0])
            raise ValueError(f"edge_index: edge {bad} joins graphs {int(b[ei[0, bad]])} and "
                             f"{int(b[ei[1, bad]])}; graphs of a batch must be disconnected")
        self.edge_counts = torch.bincount(self.edge_graph, minlength=self.num_graphs)
        self.node_local = _local(b, self.num_graphs)
        self.edge_local = _local(self.edge_graph, self.num_graphs)
        if self.edge_attr is not None:
            self.edge_attr = check_tensor(self.edge_attr, "edge_attr")
            if self.edge_attr.dim() == 1:
                self.edge_attr = self.edge_attr[:, None]
            if self.edge_attr.dim() != 2 or len(self.edge_attr) != ei.shape[1]:
                raise ValueError(f"edge_attr must be (edges, features) with {ei.shape[1]} "
                                 f"edges, got shape {tuple(self.edge_attr.shape)}")

    def _pad(self, values: Tensor, graph: Tensor, local: Tensor, counts: Tensor) -> Tensor:
        width = int(counts.max()) if len(counts) else 0
        out = values.new_zeros(self.num_graphs, width, *values.shape[1:])
        out[graph, local] = values
        return out

    def pad_nodes(self, values: Tensor) -> Tensor:
        """Node-major ``(N, ...)`` -> ``(G, most nodes, ...)``, zero-padded."""
        return self._pad(values, self.batch, self.node_local, self.node_counts)

    def pad_edges(self, values: Tensor) -> Tensor:
        """Edge-major ``(E, ...)`` -> ``(G, most edges, ...)``, zero-padded."""
        return self._pad(values, self.edge_graph, self.edge_local, self.edge_counts)

    def unpad_nodes(self, padded: Tensor) -> Tensor:
        """``(G, most nodes, ...)`` -> node-major ``(N, ...)`` in the given node order."""
        return padded[self.batch, self.node_local]

    def unpad_edges(self, padded: Tensor) -> Tensor:
        """``(G, most edges, ...)`` -> edge-major ``(E, ...)`` in the given edge order."""
        return padded[self.edge_graph, self.edge_local]

    def padded(self, edges: bool = True) -> tuple[Tensor, ...]:
        """The inputs to attribute: ``(nodes,)`` or ``(nodes, edge features)``, padded."""
        if edges and self.edge_attr is not None:
            return self.pad_nodes(self.x), self.pad_edges(self.edge_attr)
        return (self.pad_nodes(self.x),)


def _local(owner: Tensor, groups: int) -> Tensor:
    """Each entry's position among the entries with the same owner, in order."""
    if not len(owner):
        return owner.clone()
    order = torch.argsort(owner, stable=True)
    counts = torch.bincount(owner, minlength=groups)
    starts = torch.cumsum(counts, 0) - counts
    local = torch.empty_like(owner)
    local[order] = torch.arange(len(owner), device=owner.device) - starts[owner[order]]
    return local


class GraphModel(nn.Module):
    """A graph network as a function of padded rows: ``forward(nodes, [edge features], ids)``.

    ``ids (R,)``: each row's graph. The rows are joined into one PyG batch of ``R`` disjoint
    graphs (row ``r`` a copy of graph ``ids[r]``'s edges with its own node features) and the
    model is called on it; its output must have one row per graph (a graph-level task).
    ``forward``: how to call the model, default by its parameter names (``x``, ``edge_index``,
    ``edge_attr``, ``batch``) or, for a ``forward(data)``, with a PyG ``Batch``.
    Cost: one call of the model on the joined batch, plus indexing linear in its size.
    """

    local_edges: Tensor
    fixed_edges: Tensor | None

    def __init__(self, model: nn.Module, graphs: Graphs, forward: GraphForward | None = None,
                 edges: bool = True):
        super().__init__()
        self.model, self.graphs = model, graphs
        takes_edges = True
        if forward is None:
            forward, takes_edges = _default_forward(model)
        self.call = forward
        #: whether the model reads the edge features (a signature without ``edge_attr`` does
        #: not: they are neither passed nor attributed)
        self.takes_edges = takes_edges and graphs.edge_attr is not None
        self.edges = edges and self.takes_edges
        # each graph's edges as local node indices, padded: rows index it by their graph
        self.register_buffer("local_edges", graphs.pad_edges(
            graphs.node_local[graphs.edge_index].T.contiguous()), persistent=False)
        # edge features the model reads but that are not attributed: fixed, padded once
        self.register_buffer("fixed_edges", graphs.pad_edges(graphs.edge_attr)
                             if graphs.edge_attr is not None and self.takes_edges
                             and not self.edges else None,
                             persistent=False)

    def forward(self, nodes: Tensor, *rest: Tensor) -> Any:
        *edge_values, ids = rest
        g = self.graphs
        ids = ids.to(nodes.device).long()
        n_rows = len(ids)
        node_counts, edge_counts = g.node_counts.to(ids.device)[ids], \
            g.edge_counts.to(ids.device)[ids]
        layout = RowLayout(n_rows, {"nodes": node_counts, "edges": edge_counts})
        widest_nodes, widest_edges = _widest(node_counts), _widest(edge_counts)
        x = layout.from_rows(nodes[:, :widest_nodes], "nodes")
        offsets = torch.cumsum(node_counts, 0) - node_counts
        local = self.local_edges.to(ids.device)[ids] + offsets[:, None, None]
        edge_index = layout.from_rows(local[:, :widest_edges],
                                      "edges").T.contiguous()
        batch = torch.repeat_interleave(torch.arange(n_rows, device=ids.device), node_counts)
        if self.edges:
            edge_attr = layout.from_rows(edge_values[0][:, :widest_edges],
                                         "edges")
        elif self.fixed_edges is not None:
            edge_attr = layout.from_rows(self.fixed_edges.to(nodes.device)[ids][
                :, :widest_edges], "edges")
        else:
            edge_attr = None
        with row_layout(layout):
            out = self.call(self.model, x, edge_index, edge_attr, batch)
        if isinstance(out, Tensor) and out.dim() >= 1 and len(out) != n_rows:
            raise ValueError(f"the graph model returned {len(out)} rows for {n_rows} graphs: "
                             f"graph-level outputs (one row per graph, a pooled readout) are "
                             f"expected")
        return out


def _widest(counts: Tensor) -> int:
    return int(counts.max()) if len(counts) else 0


def _default_forward(model: nn.Module) -> tuple[GraphForward, bool]:
    """How to call ``model`` and whether it takes edge features."""
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        params = {}
    names = set(params)
    if {"x", "edge_index"} <= names:
        takes_edges = "edge_attr" in names or any(p.kind is p.VAR_KEYWORD
                                                  for p in params.values())

        def by_name(m, x, edge_index, edge_attr, batch):
            kw: dict[str, Tensor] = {"x": x, "edge_index": edge_index}
            if "batch" in names:
                kw["batch"] = batch
            if edge_attr is not None:
                kw["edge_attr"] = edge_attr
            return m(**kw)
        return by_name, takes_edges
    positional = [p for p in params.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) == 1:
        def with_data(m, x, edge_index, edge_attr, batch):
            from torch_geometric.data import Batch

            kw = {"edge_attr": edge_attr} if edge_attr is not None else {}
            data = Batch(x=x, edge_index=edge_index, batch=batch,
                         ptr=torch.cat([batch.new_zeros(1), torch.cumsum(
                             torch.bincount(batch), 0)]), **kw)
            return m(data)
        return with_data, True
    raise TypeError(f"cannot tell how to call {type(model).__name__}.forward"
                    f"{inspect.signature(model.forward)}: name its parameters x, edge_index "
                    f"(edge_attr, batch) or pass forward=lambda model, x, edge_index, "
                    f"edge_attr, batch: ...")


@dataclass
class GraphAttribution:
    """Attributions of a batch of graphs, in the input's own layout.

    nodes: ``(N, F)`` like ``x``; edges: ``(E, Fe)`` like ``edge_attr`` (None when edge
    features were not attributed); delta: ``(G,)`` each graph's completeness gap; result: the
    method's ``Attribution`` on the padded rows (path points in ``alphas``, facts in ``info``).
    """

    nodes: Tensor
    edges: Tensor | None
    delta: Tensor | None
    graphs: Graphs
    result: Attribution

    @property
    def info(self) -> dict[str, Any]:
        return self.result.info

    def node_scores(self, edges: bool = False) -> Tensor:
        """``(N,)``: each node's attribution summed over its features; with ``edges``, plus
        half of each incident edge's (so that a graph's node scores add up to its total)."""
        s = self.nodes.sum(-1)
        if edges and self.edges is not None:
            half = self.edges.sum(-1) / 2
            ei = self.graphs.edge_index
            s = s.index_add(0, ei[0], half).index_add(0, ei[1], half)
        return s

    def edge_scores(self) -> Tensor | None:
        """``(E,)``: each edge's attribution summed over its features, if attributed."""
        return None if self.edges is None else self.edges.sum(-1)

    def per_graph(self) -> list[Tensor]:
        """Each graph's node scores, ``[(n_g,)]``."""
        s = self.node_scores()
        return [s[self.graphs.batch == g] for g in range(self.graphs.num_graphs)]


def attribute_graphs(model: nn.Module, data: Any, method: str | Any = "ig", *,
                     target: Any = None, baselines: Any = None, edges: bool = True,
                     forward: GraphForward | None = None, layer: Any = None,
                     **options: Any) -> GraphAttribution:
    """Attribute a graph network's output for each graph of ``data`` to its node features
    (and edge features, with ``edges`` and an ``edge_attr``).

    ``data``: a PyG ``Data``/``Batch`` or ``Graphs``; ``method``: a registry name (``"ig"``,
    ``"deeplift"``, ``"idg"``, ...) or a method instance built on a ``GraphModel``;
    ``baselines``: None (zeros), a number, node features ``(N, F)`` or a pair
    ``(nodes, edge features)`` in the input's layout; ``options`` go to ``attribute``
    (``steps``, ``rule``, ``tol``, ...). Returns a ``GraphAttribution``; its ``delta`` is per
    graph. Cost: the method's on ``G`` examples; each model call joins its rows into one batch.
    """
    from . import registry

    g = data if isinstance(data, Graphs) else Graphs.of(data)
    wrapped = GraphModel(model, g, forward, edges)
    inputs = g.padded(wrapped.edges)
    if isinstance(method, str):
        name = registry.canonical(method)
        if name not in registry.METHODS:
            raise ValueError(f"method: unknown method {method!r}")
        info = registry.METHODS[name]
        if info.images:
            raise ValueError(f"method {name!r} works on images only, not on graphs")
        # layers are named as in the user's model, which GraphModel holds as ``model``
        args = ((f"model.{layer}" if isinstance(layer, str) else layer),) \
            if info.space == "layer" else ()
        options = {**info.attribute, **options}
        method = registry.make(name, wrapped, *args)
    instance: Any = method
    if "baselines" in inspect.signature(instance.attribute).parameters:
        options["baselines"] = _baselines(g, baselines, inputs)
    elif baselines is not None:
        raise ValueError(f"{type(instance).__name__} takes no baselines")
    result = instance.attribute(inputs[0] if len(inputs) == 1 else inputs, target=target,
                              additional_forward_args=(per_example(torch.arange(
                                  g.num_graphs, device=g.x.device)),), **options)
    a = result.attributions
    parts = [p for p in (a if isinstance(a, tuple) else (a,)) if isinstance(p, Tensor)]
    if len(parts) == len(inputs) and parts[0].shape == inputs[0].shape:
        nodes: Any = g.unpad_nodes(parts[0])
        edge_part = g.unpad_edges(parts[1]) if len(parts) > 1 else None
    else:  # a layer method: its attributions are the layer's, left padded by rows
        nodes, edge_part = a, None
    return GraphAttribution(nodes, edge_part, result.delta, g, result)


def _baselines(g: Graphs, baselines: Any, inputs: tuple[Tensor, ...]) -> Any:
    if baselines is None or isinstance(baselines, (int, float)):
        value = 0.0 if baselines is None else float(baselines)
        out = tuple(torch.full_like(t, value) for t in inputs)
    else:
        given = baselines if isinstance(baselines, tuple) else (baselines,)
        if len(given) != len(inputs):
            raise ValueError(f"baselines: expected {len(inputs)} tensors (node features"
                             + (" and edge features" if len(inputs) > 1 else "")
                             + f"), got {len(given)}")
        shapes = [g.x.shape] + ([g.edge_attr.shape] if g.edge_attr is not None
                                and len(inputs) > 1 else [])
        for t, shape, what in zip(given, shapes, ("node", "edge")):
            if not isinstance(t, Tensor) or t.shape != shape:
                raise ValueError(f"baselines: {what} features must have shape "
                                 f"{tuple(shape)}, got "
                                 f"{tuple(t.shape) if isinstance(t, Tensor) else t!r}")
        out = (g.pad_nodes(given[0]),) + ((g.pad_edges(given[1]),) if len(given) > 1 else ())
    return out[0] if len(out) == 1 else out


__all__ = ["GraphAttribution", "GraphModel", "Graphs", "attribute_graphs"]
