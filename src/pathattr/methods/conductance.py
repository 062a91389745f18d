"""Conductance of hidden neurons (Dhamdhere et al. 2018), as Neuron Integrated Gradients
(Shrikumar et al. 2018).

Total conductance of a neuron ``y`` is a path integral in the layer's space,

    TotalCond_y = int_0^1 dF/dy (x(a)) dy(x(a))/da da  ~  sum_k dF/dy (a_k) (y(t_k) - y(t_{k-1}))

with each node ``a_k`` of the rule inside its cell ``[t_{k-1}, t_k]`` (``quadrature.cell_edges``),
``t_0 = 0`` and ``t_m = 1``. The hidden path thus runs from ``y(x')`` to ``y(x)`` for every rule,
and over a layer that separates input from output the sum telescopes to ``F(x) - F(x')`` up to
quadrature error only. One forward over the path and one backward down to the layer give every
neuron of the layer (or of several layers) at once.

Neuron conductance per input feature (Dhamdhere's form, computed as Captum does):

    Cond_i^y = (x_i - x'_i) sum_k w_k dF/dy (a_k) dy/dx_i (a_k)

Summed over ``i`` it is ``sum_k w_k dF/dy (a_k) dy/da (a_k)``: the same integral as ``TotalCond_y``
discretised with the derivative instead of the cell difference, so the two agree up to quadrature
error and converge together as ``steps`` grow.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cached_property
from typing import Literal, NamedTuple, cast

import numpy as np
import torch
from torch import Tensor, nn

from ..baselines import BaselineSpec
from ..call import (
    ConvergenceDelta,
    Explainer,
    Inputs,
    LayerNoise,
    embedding_path,
    layer_tensors,
)
from ..engine import PathEngine, guarded
from ..forward import OutputSpec
from ..integrate import (
    Integral,
    Integrator,
    Nodes,
    Path,
    Points,
    flat_points,
    integrate,
    nodes_of,
    rule_tensors,
    tap_key,
    tapped_ends,
)
from ..layers import LayerSpec, Tap, check_reached, resolve_layer, tap_layers
from ..quadrature import cell_edges, nodes_weights
from ..result import Attribution
from ..targets import TargetSpec

#: A neuron: a flat index into one example's layer output, or its multi-index.
NeuronSpec = int | Sequence[int]


def _joint(results: list[Attribution], groups: list[list[str]], out_delta: Tensor
           ) -> list[Attribution]:
    """One result per layer: the results of a layer of several tensors (``groups``, in the
    order of ``results``) joined, attributions a tuple, ``delta`` their gap together."""
    joined, i = [], 0
    for group in groups:
        part = results[i:i + len(group)]
        i += len(group)
        if len(group) == 1:
            joined.append(part[0])
            continue
        deltas = [r.delta for r in part if r.delta is not None]  # conductance always has one
        delta = sum(deltas[1:], deltas[0]) + (len(part) - 1) * out_delta
        joined.append(Attribution(tuple(r.attributions for r in part), delta, part[0].alphas,
                                  part[0].weights, {**part[0].info, "layer": group,
                                                    "per_tensor": part}))
    return joined


class LayerConductance(ConvergenceDelta):
    """Total conductance of every neuron of one layer, or of several layers in one pass.

    ``LayerConductance(model, layer)`` and ``LayerConductance(model, layers=[...])`` both return
    one ``Attribution``; with ``layers`` its ``attributions`` is a tuple (one tensor per layer,
    in the order given, all from one path evaluation), ``delta`` is ``(B, n_layers)`` and
    ``info["per_layer"]`` holds each layer's own ``Attribution``.

    Token ids: the path runs in ``path_layer``'s space (default: the model's
    ``get_input_embeddings()``). ``multiply_by_inputs=False`` returns the layer gradient
    integrated over the path, ``sum_k dF/dy(a_k) (t_k - t_{k-1})``, instead of
    ``sum_k dF/dy(a_k) (y(t_k) - y(t_{k-1}))``; ``delta`` stays that of the conductance.
    """

    def __init__(self, model: nn.Module, layer: LayerSpec | None = None, *,
                 layers: Sequence[LayerSpec] | None = None, path_layer: LayerSpec | None = None,
                 multiply_by_inputs: bool = True):
        if (layer is None) == (layers is None):
            raise TypeError("give exactly one of layer=... or layers=[...]")
        if layers is not None and (isinstance(layers, (str, nn.Module)) or len(layers) == 0):
            raise TypeError("layers must be a non-empty list of layer names or modules")
        self.model, self.path_layer = model, path_layer
        self.multiply_by_inputs = multiply_by_inputs
        self.several = layers is not None
        self.layers: list[LayerSpec] = list(layers) if layers is not None else \
            [layer] if layer is not None else []
        named = [resolve_layer(model, spec) for spec in self.layers]
        names = [n for n, _ in named]
        if len(set(names)) != len(names):
            raise ValueError(f"layers lists a layer twice: {names}")
        if path_layer is not None:
            resolve_layer(model, path_layer)

    def attribute(
        self,
        x: Inputs,
        baselines: BaselineSpec | tuple = None,
        target: TargetSpec = None,
        *,
        steps: int = 50,
        rule: str = "gausslegendre",
        batch_size: int | Literal["auto"] = "auto",
        attribute_to_layer_input: bool = False,
        layer_noise: LayerNoise | None = None,
        additional_forward_args: tuple | None = None,
        forward_kwargs: dict | None = None,
        output: OutputSpec = None,
    ) -> Attribution:
        """Return the total conductance of every neuron: ``attributions`` have the shape of the
        layer's output (or input) per example and ``delta`` is ``attributions.sum() -
        (F(x) - F(x'))`` (a completeness gap only when the layer separates input from output).
        A layer whose output (or positional inputs) is several tensors, named without an
        element, is one cut: ``attributions`` a tuple (one tensor per floating-point element),
        ``delta`` their joint gap (one more forward of one row finds the elements).

        Memory: the layer's gradients and activations at every path point, like Captum's.
        Cost: ``steps`` forward passes and backward passes down to the layer only (no autograd
        graph below it), two forward passes for the endpoints (which also give the layers at
        ``a = 0`` and ``a = 1``), and forward passes stopped after the layers at the other cell
        edges that are not nodes (``steps - 1`` for Gauss-Legendre, none for Riemann
        left/right); per example and baseline.
        """
        s = self.prepare(x, baselines, target, additional_forward_args, forward_kwargs,
                         output, integers=True)
        nodes = nodes_of({"steps": steps, "rule": rule})
        with guarded(self.model):
            engine = s.engine(batch_size)
            embedding_path(engine, self.path_layer, layer_noise)
            groups = layer_tensors(self.model, self.layers, attribute_to_layer_input, s)
            integrators = [ConductanceIntegral(name, attribute_to_layer_input,
                                               self.multiply_by_inputs, nodes)
                           for group in groups for name in group]
            f1, f0, ends = tapped_ends(engine, integrators, self.model)
            path = Path.of(s, engine, f0, f1, nodes, layer_ends=ends)
            results = [i.result(path) for i in integrate(path, integrators)]
        out_delta = s.mean(f1 - f0)
        results = _joint(results, groups, out_delta)
        if not self.several:
            return results[0]
        names = [r.info["layer"] for r in results]
        return Attribution(tuple(r.attributions for r in results),
                           torch.stack([_delta(r) for r in results], 1), path.alphas,
                           path.weights,
                           {**results[0].info, "layer": names,
                            "per_layer": dict(zip(map(str, names), results))})


class NeuronConductance(Explainer):
    """Conductance of chosen neurons of one layer to every input feature.

    Token ids: the features are those of ``path_layer``'s output (default: the model's
    ``get_input_embeddings()``), where the path runs. ``multiply_by_inputs=False`` returns
    ``sum_k w_k dF/dy (a_k) dy/dx (a_k)`` without the factor ``x - x'``.
    """

    def __init__(self, model: nn.Module, layer: LayerSpec, *,
                 path_layer: LayerSpec | None = None, multiply_by_inputs: bool = True):
        super().__init__(model)
        self.layer, self.path_layer = layer, path_layer
        self.multiply_by_inputs = multiply_by_inputs
        resolve_layer(model, layer)

    def attribute(
        self,
        x: Inputs,
        neurons: NeuronSpec | Sequence[NeuronSpec] | Tensor | Callable[[Tensor], Tensor]
        | Sequence[Callable[[Tensor], Tensor]],
        baselines: BaselineSpec | tuple = None,
        target: TargetSpec = None,
        *,
        steps: int = 50,
        rule: str = "gausslegendre",
        batch_size: int | Literal["auto"] = "auto",
        attribute_to_neuron_input: bool = False,
        layer_noise: LayerNoise | None = None,
        additional_forward_args: tuple | None = None,
        forward_kwargs: dict | None = None,
        output: OutputSpec = None,
    ) -> Attribution:
        """Return ``attributions`` of shape ``(n_neurons, *x.shape)`` (a tuple of such for tuple
        inputs): the conductance of each neuron for each input feature. ``neurons``: a list of
        multi-indices into one example's layer output (``[(12, 3, 3), (40, 0, 1)]``) or of flat
        indices (``[7, 300]``); a single int or tuple is one neuron; or a function of the layer's
        output returning one value per example (or a list of them), as Captum's
        ``neuron_selector``: ``s(dF/dy) ds(y)/dx`` on the path. ``delta`` is None (no
        completeness against ``F``); ``info["total_conductance"]`` is the per-neuron sum over
        features, ``(n_neurons, B)``.

        Cost: one forward pass for the layer shape, then per example and baseline ``steps``
        forward passes with the graph from the input, one backward down to the layer, and one
        vector-Jacobian product from the layer to the input per neuron (the forward and the
        backward to the layer are shared by all neurons).
        """
        name, module = resolve_layer(self.model, self.layer)
        s = self.prepare(x, baselines, target, additional_forward_args, forward_kwargs,
                         output, integers=True)
        with guarded(self.model):
            engine = s.engine(batch_size)
            diff = embedding_path(engine, self.path_layer, layer_noise)
            chosen = _selectors(neurons)
            (names,) = layer_tensors(self.model, [name], attribute_to_neuron_input, s) \
                if chosen is not None else ([name],)
            if chosen is None:
                one = torch.zeros(min(1, len(s.x)), dtype=torch.long, device=s.x.device)
                shape = engine.activations([name], one, torch.ones(
                    len(one), dtype=diff.dtype, device=s.x.device),
                    attribute_to_neuron_input)[0].shape[1:]
                which = flat_neurons(neurons, tuple(shape), name).to(s.x.device)
            else:
                which = chosen
            alphas, weights = rule_tensors(rule, steps, diff)
            rows, flat_a = flat_points(s.x.shape[0], alphas)
            grad_sum = neuron_gradient_sums(engine, names, attribute_to_neuron_input,
                                            which, rows, flat_a, weights.repeat(s.x.shape[0]))
        k = len(grad_sum)
        attr = (grad_sum * diff).reshape(k, s.k, s.b, *diff.shape[1:]).mean(1)
        shown = attr if self.multiply_by_inputs else \
            grad_sum.reshape(k, s.k, s.b, *diff.shape[1:]).mean(1)
        if engine.layer_path is None and s.packer.packed:
            parts = tuple(torch.stack(p) for p in zip(*[s.packer.unpack(a) for a in shown]))
            shown = parts[0] if s.packer.single else parts
        named = [getattr(f, "__name__", repr(f)) for f in which] if isinstance(which, list) \
            else [tuple(int(v) for v in m)
                  for m in torch.stack(torch.unravel_index(which, tuple(shape)), 1)]
        return Attribution(shown, None, alphas, weights,
                           {"rule": rule, "steps": steps, "layer": name, "neurons": named,
                            "total_conductance": attr.flatten(2).sum(2)})


def _selected(select: Callable, t: Tensor | tuple[Tensor, ...], n: int) -> Tensor:
    out = select(t)
    if not isinstance(out, Tensor) or tuple(out.shape) != (n,):
        shape = tuple(t.shape) if isinstance(t, Tensor) else [tuple(p.shape) for p in t]
        raise ValueError(f"a neuron selector must return one value per example, shape ({n},), "
                         f"from the layer's output {shape}; got "
                         f"{tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__}")
    return out


def neuron_gradient_sums(engine: PathEngine, layer: list[str], use_input: bool,
                         idx: Tensor | list[Callable[[Tensor], Tensor]], rows: Tensor,
                         alphas: Tensor, weights: Tensor) -> Tensor:
    """``sum_k w_k dF/dy_j (a_k) dy_j/dx (a_k)`` per neuron ``j`` (flat index ``idx[j]``) and row,
    with ``x`` the path's point (the input, or the engine's layer path). ``idx`` may instead
    be selector functions ``s`` of the layer's output, one value per example (a slice sum, a
    channel mean): then ``s(dF/dy) ds(y)/dx``, Captum's convention (exact for one neuron;
    for an aggregate it is Captum's heuristic, not a conductance). ``layer``: the names to tap
    (``layer_tensors``); several only with selectors, which then read the tuple of tensors.

    Returns ``(len(idx), n_rows, *point_shape)``. Cost: per chunk of points one forward with
    the graph from the path point and one backward to the layer, then one vector-Jacobian
    product from the layer to the point per neuron, all on that chunk's graph.

    The neurons' products run one after the other on the retained graph, not as one batched
    product: on EfficientNet-Lite0 ``_blocks.8`` (16 points, 2 CPU threads) a plain product took
    0.40 s per neuron, ``autograd.grad(is_grads_batched=True)`` 1.24 s and ``torch.func.vmap``
    over ``vjp`` 1.03-2.29 s, because their batching rules for convolution and batch-norm
    backward fall back to slower per-example kernels.
    """
    n_points, k = len(rows), len(idx)
    bs = engine.batch_size(n_points)
    state: dict[int, Tensor] = {}
    lp = engine.layer_path
    shape = engine.x.shape if lp is None else lp.start[0].shape
    acc = torch.zeros((k, *shape), dtype=weights.dtype, device=engine.x.device)
    with tap_layers(engine.model, [*engine.path_specs(state),
                                   *(Tap(n, use_input) for n in layer)]) as hooks, \
            torch.enable_grad():
        taps = hooks[len(hooks) - len(layer):]
        for start in range(0, n_points, bs):
            span = slice(start, min(start + bs, n_points))
            r = rows[span]
            for h in hooks:
                h.reset()
            inp = engine.inputs_at(r, alphas[span], state, grad=True)
            point = inp if lp is None else state[0]
            out = engine.evaluate(inp, r)
            ys = [t.check() for t in taps]
            check_reached(out, layer)
            gys = torch.autograd.grad(out.sum(), ys, retain_graph=True, allow_unused=True,
                                      materialize_grads=True)
            y, gy = ys[0], gys[0]
            # The output gradient and the quadrature weight enter each neuron's seed, so that
            # its product returns the whole weighted term at once.
            if not isinstance(idx, Tensor):  # selector functions: Captum's convention
                # a layer of several tensors: the selector reads the tuple
                y_in, gy_in = (tuple(ys), tuple(gys)) if len(ys) > 1 else (y, gy)
                for j, select in enumerate(idx):
                    coef = _selected(select, gy_in, len(r)) * weights[span]
                    (jac,) = torch.autograd.grad(_selected(select, y_in, len(r)), point,
                                                 coef.to(y.dtype), retain_graph=j < k - 1,
                                                 allow_unused=True, materialize_grads=True)
                    acc[j].index_add_(0, r, jac.to(acc.dtype))
                continue
            coef = (gy.reshape(len(r), -1)[:, idx] * weights[span, None]).to(y.dtype)
            # contiguous, so that a flat neuron index addresses it in the layer's logical order
            seed = y.new_zeros(y.shape)
            flat = seed.view(len(r), -1)
            for j in range(k):
                flat.zero_()
                flat[:, idx[j]] = coef[:, j]
                (jac,) = torch.autograd.grad(y, point, seed, retain_graph=j < k - 1,
                                             allow_unused=True, materialize_grads=True)
                acc[j].index_add_(0, r, jac.to(acc.dtype))
    return acc


def _delta(r: Attribution) -> Tensor:
    """A conductance result's gap (every conductance result has one)."""
    assert r.delta is not None
    return r.delta


def _selectors(neurons: object) -> list[Callable[[Tensor], Tensor]] | None:
    """``neurons`` as selector functions (one callable, or a list of them); None for indices."""
    if callable(neurons) and not isinstance(neurons, Tensor):
        return [cast(Callable[[Tensor], Tensor], neurons)]
    if isinstance(neurons, (list, tuple)) and neurons and all(callable(n) for n in neurons):
        return [cast(Callable[[Tensor], Tensor], n) for n in neurons]
    return None


def flat_neurons(neurons: object, shape: tuple[int, ...], layer: str) -> Tensor:
    """Flat indices ``(K,)`` into one example's layer output of ``shape``; raise on a bad
    format or an index out of range (no negative indices: they are usually mistakes)."""
    where = f"layer {layer!r} has output shape {shape} per example"
    if isinstance(neurons, Tensor):
        if neurons.is_floating_point() or neurons.dim() not in (1, 2):
            raise TypeError(f"neurons tensor must be integer of shape (K,) or (K, {len(shape)}), "
                            f"got {neurons.dtype} {tuple(neurons.shape)}")
        neurons = [int(v) if neurons.dim() == 1 else tuple(int(c) for c in v)
                   for v in neurons.tolist()]
    elif isinstance(neurons, (int, tuple)) and not isinstance(neurons, bool):
        neurons = [neurons]
    if not isinstance(neurons, Sequence) or isinstance(neurons, str) or len(neurons) == 0:
        raise TypeError("neurons must be a non-empty list of flat indices or index tuples, "
                        f"got {neurons!r}")
    numel = int(np.prod(shape))
    flat = []
    for n in neurons:
        if isinstance(n, (int, np.integer)) and not isinstance(n, bool):
            if not 0 <= n < numel:
                raise IndexError(f"neuron {n} out of range: {where}, so flat indices run "
                                 f"0..{numel - 1}")
            flat.append(int(n))
        elif isinstance(n, (tuple, list)) and all(
                isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in n):
            if len(n) != len(shape):
                raise ValueError(f"neuron {tuple(n)} has {len(n)} indices, but {where}; give "
                                 f"{len(shape)} indices or a flat index")
            if any(not 0 <= c < d for c, d in zip(n, shape, strict=True)):
                raise IndexError(f"neuron {tuple(n)} out of range: {where}")
            flat.append(int(np.ravel_multi_index(tuple(int(c) for c in n), shape)))
        else:
            raise TypeError(f"each neuron must be a flat int index or a tuple of ints, got {n!r}")
    return torch.tensor(flat, dtype=torch.long)


class EdgePlan(NamedTuple):
    """Where the activations at a rule's cell edges come from.

    ``edges``: the cell edges; ``node_of_edge``: the node each edge coincides with (-1 if
    none); ``missing``: the inner edges without a node, which need a forward pass of their own.
    The outer edges ``0`` and ``1`` come from the endpoint passes every method makes."""

    edges: np.ndarray
    node_of_edge: np.ndarray
    missing: np.ndarray

    @property
    def uses_node_acts(self) -> bool:
        """Whether some inner edge reuses a node's activation from the gradient pass."""
        return bool((self.node_of_edge[1:-1] >= 0).any())

    def edge_activations(self, engine: PathEngine, layers: Sequence[str | nn.Module],
                         use_input: bool = False) -> list[Tensor | None]:
        """Each layer's activations at the ``missing`` edges of every row, ``(rows * edges,
        *shape)`` per layer (``None`` when none are missing). Cost: one forward per row and
        edge, stopped after the layers."""
        if not len(self.missing):
            return [None] * len(layers)
        x, diff = engine.x, engine.path_diff
        rows, alphas = flat_points(len(x), torch.as_tensor(self.edges[self.missing],
                                                           dtype=diff.dtype, device=x.device))
        acts: list[Tensor | None] = [*engine.activations(layers, rows, alphas, use_input)]
        return acts


class ConductanceIntegral(Integrator):
    """Total conductance of every neuron of ``layer`` (its output, or its input with
    ``use_input``) on a shared pass, for ``LayerConductance`` and ``explain``'s
    ``("conductance", layer)``: its gradients at the nodes, its activations at the cell edges
    (read off the pass where an edge is a node; the ends from ``Path.layer_ends``; the other
    edges measured once per path for every layer tapped on it alike).
    ``multiply_by_inputs=False``: the layer gradient integrated over the path instead.
    Memory: the layer's gradients (and activations) at every node."""

    OPTIONS = ("layer",)

    def __init__(self, layer: LayerSpec | None = None, use_input: bool = False,
                 multiply_by_inputs: bool = True, nodes: Nodes | None = None):
        if layer is None:
            raise TypeError("conductance needs a layer: ('conductance', layer) or "
                            "('conductance', {'layer': layer})")
        self.layer, self.use_input = layer, use_input
        self.multiply_by_inputs, self.nodes = multiply_by_inputs, nodes
        self.grads: list[Tensor] = []
        self.acts: list[Tensor] = []

    def taps(self, model) -> list[Tap]:
        self.name = resolve_layer(model, self.layer)[0]
        tap = Tap(self.name, self.use_input)
        self.key = tap_key(tap)
        return [tap]

    @cached_property
    def plan(self) -> EdgePlan:
        """The cell edges of its nodes (known once ``of`` set them)."""
        assert self.nodes is not None  # set by ``of``
        return edge_plan(*nodes_weights(*self.nodes))

    @property
    def wants_acts(self) -> bool:  # type: ignore[override]
        return self.plan.uses_node_acts

    def add(self, step: Points) -> None:
        self.grads.append(step.layers[self.key])
        if self.key in step.acts:
            self.acts.append(step.acts[self.key])

    def finish(self, path: Path) -> Integral:
        """Cost: forwards stopped after the tapped layers at the inner edges that are not
        nodes, once per path."""
        memo = path.memo.setdefault("edge_activations", {})
        if self.key not in memo:
            alike = [(k, t) for k, (t, _, _) in path.layer_ends.items()
                     if t.use_input == self.use_input]
            memo.update(zip([k for k, _ in alike], self.plan.edge_activations(
                path.engine, [t.layer for _, t in alike], self.use_input)))
        s = path.s
        _, y0, y1 = path.layer_ends[self.key]
        r = total_conductance(s, self.grads, self.acts, memo[self.key], (y0, y1), self.plan,
                              path.steps, s.mean(path.f1 - path.f0), str(path.rule), self.name,
                              path.alphas, path.weights, self.multiply_by_inputs)
        assert r.delta is not None  # conductance has a gap
        return Integral([cast(Tensor, r.attributions)], r.delta, r.alphas, r.weights, r.info,
                        layer=True)


class TargetConductanceIntegral(Integrator):
    """Per target, the total conductance of every neuron of ``layers``' inputs (e.g. the
    MLPs' hidden units), ``sum_k dS_t/dy(a_k) (y(t_k) - y(t_{k-1}))``, ``(B, T, *shape)`` per
    layer, accumulated during the pass it rides (memory: the neurons at the cell edges, not
    their gradients at every point). ``layers`` are the model's names, tapped as modules (a
    wrapping call names them otherwise). Cost (``start``): ``m - 1`` forwards per row at the
    inner cell edges, stopped after the last layer, and two for the ends. It rides
    ``nodes``, those of the method beside it."""

    def __init__(self, layers: Sequence[LayerSpec], model: nn.Module, nodes: Nodes | None):
        self.named = [resolve_layer(model, n) for n in layers]
        self.nodes = nodes
        self._taps = [Tap(module, True) for _, module in self.named]
        self.out: dict[str, Tensor] = {}

    def taps(self, model) -> list[Tap]:
        return self._taps

    def start(self, path: Path) -> None:
        b, m, engine = path.rows, len(path.alphas), path.engine
        modules = [module for _, module in self.named]
        edges = cell_edges(path.weights.double().cpu().numpy())
        inner = torch.as_tensor(edges[1:-1], dtype=path.alphas.dtype, device=path.alphas.device)
        _, _, ends = engine.ends(modules, use_input=True)
        mid = engine.activations(modules, *flat_points(b, inner), use_input=True)
        self.steps_y = []
        for (y0, y1), ym in zip(ends, mid):
            y = torch.cat([y0[:, None], ym.reshape(b, m - 1, *y0.shape[1:]), y1[:, None]], 1)
            self.steps_y.append((y[:, 1:] - y[:, :-1]).flatten(0, 1))  # row b * m + k

    def add(self, step: Points) -> None:
        for (name, _), tap, dy in zip(self.named, self._taps, self.steps_y):
            g = step.layers[tap_key(tap)]
            if name not in self.out:
                self.out[name] = g.new_zeros((step.path.rows, *g.shape[1:]))
            at = dy[torch.arange(step.chunk.span.start, step.chunk.span.stop, device=dy.device)]
            self.out[name].index_add_(0, step.rows, g * at[:, None].to(g.dtype))

    def finish(self, path: Path) -> Integral:
        """The conductances by layer name in ``info["conductance"]``."""
        return Integral([], path.f1.new_zeros(0), path.alphas, path.weights,
                        {"conductance": self.out}, layer=True)


def edge_plan(a: np.ndarray, w: np.ndarray) -> EdgePlan:
    """The ``EdgePlan`` of the rule with nodes ``a`` and weights ``w``."""
    edges = cell_edges(w)
    # The nearest node of each edge among its two sorted neighbours: O(steps log steps), where
    # a full edge-by-node distance table would grow with steps squared.
    right = np.clip(np.searchsorted(a, edges), 1, len(a) - 1) if len(a) > 1 else \
        np.zeros(len(edges), int)
    left = np.maximum(right - 1, 0)
    nearest = np.where(np.abs(a[left] - edges) <= np.abs(a[right] - edges), left, right)
    node_of_edge = np.where(np.abs(a[nearest] - edges) < 1e-12, nearest, -1)
    inner = np.arange(len(edges))[1:-1]
    return EdgePlan(edges, node_of_edge, inner[node_of_edge[1:-1] < 0])


def total_conductance(s, grads: list[Tensor], node_acts: list[Tensor], edge_acts: Tensor | None,
                      ends: tuple[Tensor, Tensor], plan: EdgePlan, steps: int, out_delta: Tensor,
                      rule: str, name: str, alphas: Tensor, weights: Tensor,
                      multiply_by_inputs: bool = True) -> Attribution:
    """Total conductance ``sum_k dF/dy(a_k) (y(t_k) - y(t_{k-1}))`` of one layer from its
    gradients at the nodes, its activations at the nodes, at the ``missing`` inner edges and
    at both ends (``ends``: at the baseline, at the input). Without ``multiply_by_inputs`` the
    attributions are ``sum_k dF/dy(a_k) (t_k - t_{k-1})`` (``delta`` unchanged)."""
    edges, node_of_edge, missing = plan
    n_rows = len(s.x)
    g = torch.cat(grads).reshape(n_rows, steps, *grads[0].shape[1:])
    y = g.new_empty((n_rows, len(edges), *g.shape[2:]))
    y[:, 0], y[:, -1] = ends[0].reshape(y[:, 0].shape), ends[1].reshape(y[:, -1].shape)
    if node_acts:
        acts = torch.cat(node_acts).reshape(g.shape)
        hit = np.flatnonzero(node_of_edge >= 0)
        y[:, hit] = acts[:, node_of_edge[hit]]
    if len(missing):
        assert edge_acts is not None  # measured for every missing edge (edge_activations)
        y[:, missing] = edge_acts.reshape(n_rows, len(missing), *g.shape[2:]).to(y)
    attr = s.mean((g * (y[:, 1:] - y[:, :-1])).sum(1))
    widths = torch.as_tensor(np.diff(edges), dtype=g.dtype, device=g.device)
    shown = attr if multiply_by_inputs else \
        s.mean((g * widths.reshape(1, -1, *([1] * (g.dim() - 2)))).sum(1))
    return Attribution(shown, attr.flatten(1).sum(1) - out_delta, alphas, weights,
                       {"rule": rule, "steps": steps, "layer": name, "output_delta": out_delta,
                        "cell_edges": torch.as_tensor(edges, dtype=g.dtype)})
