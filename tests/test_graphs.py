"""graphs.py: PyG batches as inputs — completeness per graph against plain forwards, a batch
equal to graph by graph, DeepLIFT's summation-to-delta on message passing, node-major layers."""

import pytest
import torch

pytest.importorskip("torch_geometric")

from graph_nets import EDGES, call, graphs, net  # noqa: E402

from pathattr.graphs import GraphModel, Graphs, attribute_graphs  # noqa: E402

ALL = ["gcn", "gin", "gat", "gine", "dmpnn"]


def _output_change(model, name, b, target, edges=True):
    """``F(x) - F(x')`` per graph from two plain forwards, the zero baseline."""
    with torch.no_grad():
        f1 = call(model, name, b.x, b.edge_index, b.edge_attr, b.batch)[:, target]
        f0 = call(model, name, torch.zeros_like(b.x), b.edge_index,
                  torch.zeros_like(b.edge_attr) if edges and name in EDGES else b.edge_attr,
                  b.batch)[:, target]
    return f1 - f0


def _per_graph(r, b):
    total = torch.zeros(b.num_graphs, dtype=r.nodes.dtype).index_add_(0, b.batch,
                                                                       r.node_scores())
    if r.edges is not None:
        total.index_add_(0, b.batch[b.edge_index[0]], r.edge_scores())
    return total


@pytest.mark.parametrize("name", ALL)
def test_ig_is_complete_per_graph(name):
    _, b = graphs()
    model = net(name)
    r = attribute_graphs(model, b, "ig", target=1, steps=64)
    change = _output_change(model, name, b, 1)
    got = _per_graph(r, b)
    assert r.delta.shape == (b.num_graphs,)
    # the reported gap is the recomputed one; 64 Gauss-Legendre nodes across ReLU kinks leave
    # a small one (steps="auto" closes it, below)
    assert torch.allclose(r.delta, got - change, atol=1e-12)
    assert (r.delta.abs() <= 2e-2 * change.abs().max()).all()
    assert (r.edges is not None) == (name in EDGES)


@pytest.mark.parametrize("name", ["gcn", "gine"])
def test_a_batch_is_exactly_graph_by_graph(name):
    data, b = graphs(dtype=torch.float32)
    model = net(name, torch.float32)
    together = attribute_graphs(model, b, "ig", target=0, steps=32)
    for g, d in enumerate(data):
        alone = attribute_graphs(model, d, "ig", target=0, steps=32)
        nodes = together.nodes[b.batch == g]
        assert torch.allclose(alone.nodes, nodes, rtol=1e-6, atol=1e-6 * nodes.abs().max())
        assert torch.allclose(alone.delta, together.delta[g:g + 1], atol=1e-5)
        if name in EDGES:
            assert torch.allclose(alone.edges, together.edges[b.batch[b.edge_index[0]] == g],
                                  rtol=1e-6, atol=1e-6 * together.edges.abs().max())


@pytest.mark.parametrize("dtype,bound", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@pytest.mark.parametrize("name", ALL)
def test_deeplift_sums_to_delta_on_message_passing(name, dtype, bound):
    _, b = graphs(dtype=dtype)
    model = net(name, dtype)
    r = attribute_graphs(model, b, "deeplift", target=2)
    change = _output_change(model, name, b, 2).double()
    gap = (_per_graph(r, b).double() - change).abs()
    assert (gap <= bound * change.abs().clamp_min(1)).all(), gap
    assert torch.allclose(r.delta.double(), _per_graph(r, b).double() - change, atol=bound * 10)


def test_steps_auto_controls_each_graphs_gap():
    _, b = graphs(sizes=(3, 9, 6, 4))
    model = net("gat")
    r = attribute_graphs(model, b, "ig", target=0, steps="auto", tol=1e-4)
    change = _output_change(model, "gat", b, 0)
    assert (r.delta.abs() <= 1e-4 * change.abs()).all()
    assert r.info["converged"].all()


@pytest.mark.parametrize("name", ["gcn", "dmpnn"])
def test_conductance_of_a_node_major_layer_sums_to_the_output_change(name):
    _, b = graphs()
    model = net(name)
    layer = "conv1" if name == "gcn" else "w_o"
    r = attribute_graphs(model, b, "conductance", layer=layer, target=1, steps=256, edges=False)
    # the layer's nodes of each graph, padded to the largest graph
    assert r.nodes.shape[:2] == (b.num_graphs, int(torch.bincount(b.batch).max()))
    change = _output_change(model, name, b, 1, edges=False)
    total = r.nodes.flatten(1).sum(1)
    assert torch.allclose(r.delta, total - change, atol=1e-12)
    assert torch.allclose(total, change, rtol=1e-2)  # 256 nodes across the ReLU kinks
    # padding rows carry nothing
    counts = torch.bincount(b.batch)
    for g, n in enumerate(counts.tolist()):
        assert (r.nodes[g, n:] == 0).all()


def test_graph_inputs_are_checked_by_name():
    data, b = graphs()
    with pytest.raises(ValueError, match="edge_index: edge .* joins graphs"):
        Graphs.of(x=b.x, edge_index=torch.tensor([[0], [8]]), batch=b.batch)
    with pytest.raises(ValueError, match=r"edge_index: node indices must lie in \[0, 16\)"):
        Graphs.of(x=b.x, edge_index=torch.tensor([[0], [16]]), batch=b.batch)
    with pytest.raises(ValueError, match="batch: graph 1 has no nodes"):
        Graphs.of(x=b.x[:4], edge_index=torch.tensor([[0], [1]]),
                  batch=torch.tensor([0, 0, 2, 2]))
    with pytest.raises(ValueError, match=r"x: node features must be \(nodes, features\)"):
        Graphs.of(x=torch.zeros(3), edge_index=torch.tensor([[0], [1]]))
    node_level = torch.nn.Linear(5, 2).double()

    def per_node(model, x, edge_index, edge_attr, batch):
        return model(x)
    with pytest.raises(ValueError, match=r"returned \d+ rows for \d+ graphs: graph-level outputs"):
        attribute_graphs(node_level, b, "ig", target=0, forward=per_node)
    # a model without edge_attr in its signature: edge features neither passed nor attributed
    assert not GraphModel(net("gcn"), Graphs.of(b)).edges


def test_the_model_leaves_as_it_came():
    _, b = graphs()
    model = net("gin")
    hooks = [len(m._forward_hooks) for m in model.modules()]
    with pytest.raises(ValueError):
        attribute_graphs(model, b, "ig", target=7)
    attribute_graphs(model, b, "conductance", layer="conv2", target=0, steps=8)
    assert [len(m._forward_hooks) for m in model.modules()] == hooks
    assert not model.training and all(p.requires_grad for p in model.parameters())
