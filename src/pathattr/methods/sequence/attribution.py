"""``SequenceAttribution``: every target token on one shared path in embedding space
(the package docstring says how)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from typing import Any, Concatenate, Literal, ParamSpec, TypeVar, cast

import torch
from torch import Tensor, nn

from ... import registry
from ...call import Setup, flat_points, layer_path, setup
from ...engine import Chunk, accumulation_dtype, guarded
from ...forward import choose_output
from ...integrate import Path, integrate
from ...layers import LayerSpec, Tap, batch_dims, resolve_layer
from ...quadrature import cell_edges
from ...targets import Target
from ...validate import check_eval_mode, check_positive_int, check_steps
from ..deeplift import layer_pass
from ..idg import SAMPLINGS
from ..integrated_gradients import GradientIntegral
from ..left_ig import check_saturation
from .head import _Head
from .result import SequenceResult
from .tokens import (
    MAX_NEW_TOKENS,
    _check_mask,
    _check_vocabulary,
    _EncoderDecoder,
    _ids,
    context_room,
    left_align,
)

_P = ParamSpec("_P")
_R = TypeVar("_R")
SCORES = ("logit", "logprob", "prob")
#: Registry names (``pathattr.registry``) of the methods that explain every target token:
#: every integrator entry (one with fixed options is a setting here, e.g. ``sampling=``),
#: the gradient at the input, and DeepLIFT.
def sequence_methods() -> tuple[str, ...]:
    """The methods ``SequenceAttribution`` takes, read off the registry when called."""
    return (*(n for n in registry.integrated() if not registry.METHODS[n].attribute),
            "input-x-gradient", "deeplift")


METHODS = sequence_methods()


def _in_layout(f: Callable[Concatenate[Any, _P], _R]) -> Callable[Concatenate[Any, _P], _R]:
    """Run the method with the embeddings' batch dimension declared (``batch_dim``); the
    signature and docstring stay ``f``'s."""
    @functools.wraps(f)
    def run(self, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with self._layout():
            return f(self, *args, **kwargs)
    return run


class SequenceAttribution:
    """Attribute generated or given continuation tokens of a language model to its inputs.

    Causal LMs (GPT-2, Llama, any module taking ``(input_ids, attention_mask=...,
    [position_ids=...])``) and encoder-decoders (``config.is_encoder_decoder``: T5, BART,
    Marian), whose targets are attributed to every encoder token and to the decoder tokens
    before them. ``method``: one of ``METHODS``, e.g. "ig" (Integrated Gradients along the
    shared path) or "input-x-gradient" (the gradient at the input times ``e - e'``); the old
    spellings "left_ig", "input_x_gradient" still work, with a ``DeprecationWarning``.
    ``layer``: the token
    embeddings (default: found with ``get_input_embeddings()``; for encoder-decoders both
    stacks' embeddings, one module called twice when shared: ``"shared@0"``, ``"shared@1"``).
    ``batch_dim``: where the embeddings' output holds the batch, 1 for a sequence-first model
    (``embed(ids.T)``, ``(L, B, d)``).
    """

    def __init__(self, model: nn.Module, method: str = "ig", layer: LayerSpec | None = None,
                 batch_dim: int = 0):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        known = sequence_methods()
        name = registry.canonical(method, known)
        if name not in known:
            raise ValueError(f"method must be one of {', '.join(known)}, got {method!r}")
        self.model, self.method = model, str(name)
        self.batch_dim = check_positive_int(batch_dim, "batch_dim", minimum=0)
        main = getattr(model, "main_input_name", "input_ids")
        if main != "input_ids":
            raise TypeError(
                f"SequenceAttribution attributes tokens to token ids; this model's input is "
                f"{main!r} (a speech or vision encoder-decoder, e.g. Whisper). Attribute its "
                f"output tokens to {main} with IntegratedGradients or DeepLift on {main}, "
                f"forward_kwargs={{'decoder_input_ids': ids}} and target=(position, token_id)")
        config = getattr(model, "config", None)
        self.seq2seq = bool(getattr(config, "is_encoder_decoder", False))
        if self.seq2seq:
            self.call = _EncoderDecoder(model)
            self.layers = self._seq2seq_layers(layer)
        else:
            self.call = model
            self.layers = [resolve_layer(model, self._embeddings(model, layer))[0]]
            params = inspect.signature(model.forward).parameters
            self._positions = "position_ids" in params
            # HF causal LMs can project only the last positions to the vocabulary, which is
            # most of a small LM's forward (the head is vocab x hidden per position)
            self._keep = "logits_to_keep" in params

    @staticmethod
    def _embeddings(model: nn.Module, layer: LayerSpec | None) -> LayerSpec:
        if layer is not None:
            return layer
        get = getattr(model, "get_input_embeddings", None)
        found = get() if callable(get) else None
        if not isinstance(found, nn.Module):
            raise TypeError("give layer= (the token embeddings): the model has no "
                            "get_input_embeddings()")
        return found

    def _seq2seq_layers(self, layer: LayerSpec | None) -> list[str]:
        if layer is not None:
            raise TypeError("an encoder-decoder's embeddings are found from its encoder and "
                            "decoder; layer= is for causal LMs")
        enc = self._embeddings(_part(self.model, "get_encoder"), None)
        dec = self._embeddings(_part(self.model, "get_decoder"), None)
        names = [resolve_layer(self.call, m)[0] for m in (enc, dec)]
        return [f"{names[0]}@0", f"{names[0]}@1"] if enc is dec else names

    def _kwargs(self, mask: Tensor, keep: int) -> dict[str, Tensor | int]:
        """The call's keyword arguments; ``keep``: the last positions whose logits are read."""
        kw: dict[str, Tensor | int] = {"attention_mask": mask}
        if self._positions:
            kw["position_ids"] = (mask.cumsum(1) - 1).clamp(min=0)
        if self._keep:
            kw["logits_to_keep"] = keep
        return kw

    def _start_id(self) -> int:
        start = getattr(self.model.config, "decoder_start_token_id", None)
        if start is None:
            raise ValueError("the model's config has no decoder_start_token_id")
        return int(start)

    @contextmanager
    def _layout(self):
        """The embeddings' batch dimension declared to the taps (``batch_dim``)."""
        if not self.batch_dim:
            yield
            return
        modules = {resolve_layer(self.call, name)[1]: self.batch_dim for name in self.layers}
        with batch_dims(modules):
            yield

    def _path(self, s: Setup, rule: str, steps: int | str, batch_size: int | str,
              progress: bool) -> Path:
        """The straight path in embedding space of one call, shared by every target token:
        each point's forward serves all ``T`` targets, and what any method keeps of a point
        is each target's gradient times ``e - e'`` per position. Cost: four forwards per
        example (the ends, and the layer path's check)."""
        engine = s.engine(batch_size, channels_last=False)
        f1, f0 = layer_path(engine, self.layers)
        kw = {"reduce": _embedding_sum, "progress": progress}
        if self.method == "input-x-gradient":  # the gradient at the input alone
            one = engine.path_diff.new_ones(1)
            return Path.of(s, engine, f0, f1, None, 1, alphas=one, weights=one, **kw)
        if steps == "auto":  # the refinement places every point
            return Path.of(s, engine, f0, f1, None, 0, alphas=None, weights=None, **kw)
        return Path.of(s, engine, f0, f1, "riemann_left" if self.method == "idgi" else rule,
                       cast(int, steps), **kw)  # the rule checks it

    def _conductance(self, path: Path, layers: Sequence[LayerSpec]):
        """Taps and a chunk listener accumulating, during the shared pass (memory: the
        neurons at the cell edges, not their gradients at every point), each layer's input
        neurons' total conductance ``sum_k dS_t/dy(a_k) (y(t_k) - y(t_{k-1}))`` per target,
        ``(B, T, *shape)``, into the returned dict. Cost: ``m - 1`` forwards per example
        (the inner cell edges), stopped after the last layer, and two for their ends."""
        named = [resolve_layer(self.model, n) for n in layers]
        out: dict[str, Tensor] = {}
        if not named:
            return (), None, out
        b, m, engine = path.rows, len(path.alphas), path.engine
        modules = [module for _, module in named]  # the model's names; the call may wrap it
        edges = cell_edges(path.weights.double().cpu().numpy())
        inner = torch.as_tensor(edges[1:-1], dtype=path.alphas.dtype, device=path.alphas.device)
        _, _, ends = engine.ends(modules, use_input=True)
        mid = engine.activations(modules, *flat_points(b, inner), use_input=True)
        steps_y = []
        for (y0, y1), ym in zip(ends, mid):
            y = torch.cat([y0[:, None], ym.reshape(b, m - 1, *y0.shape[1:]), y1[:, None]], 1)
            steps_y.append((y[:, 1:] - y[:, :-1]).flatten(0, 1))  # row b * m + k
        names = [name for name, _ in named]

        def add(ch: Chunk) -> None:
            for i, dy in enumerate(steps_y):
                g = ch.grads[len(self.layers) + i]
                if names[i] not in out:
                    out[names[i]] = g.new_zeros((b, *g.shape[1:]))
                step = dy[torch.arange(ch.span.start, ch.span.stop, device=dy.device)]
                out[names[i]].index_add_(0, ch.rows, g * step[:, None].to(g.dtype))

        return [Tap(module, True) for module in modules], add, out

    @_in_layout
    def generate(self, ids: Tensor, mask: Tensor, max_new_tokens: int | None) -> Tensor:
        """Greedy continuation ``(B, max_new_tokens)`` of left-aligned prompts (or encoder
        inputs). Cost: ``max_new_tokens`` forwards over the growing sequence (no cache)."""
        room = context_room(self.model, ids.shape[1])
        room = MAX_NEW_TOKENS if room is None else room
        if room < 1:
            raise ValueError(f"the model's context leaves no room for max_new_tokens after "
                             f"input_ids' {ids.shape[1]} tokens")
        n_new = check_positive_int(max_new_tokens, "max_new_tokens", maximum=room)
        new: list[Tensor] = []
        dec = ids.new_full((len(ids), 1), self._start_id()) if self.seq2seq else None
        with guarded(self.model), torch.inference_mode():
            for _ in range(n_new):
                if self.seq2seq:
                    logits = self.call(ids, dec, mask)
                else:
                    logits = choose_output(self.model(ids, **self._kwargs(mask, 1)))
                nxt = logits[:, -1].argmax(-1, keepdim=True)
                new.append(nxt)
                if dec is not None:  # an encoder-decoder's decoder input grows
                    dec = torch.cat([dec, nxt], 1)
                else:
                    ids = torch.cat([ids, nxt], 1)
                    mask = torch.cat([mask, torch.ones_like(nxt)], 1)
        return torch.cat(new, 1)

    @_in_layout
    def attribute(
        self,
        input_ids: Tensor,
        target_ids: Tensor | None = None,
        max_new_tokens: int | None = None,
        baselines: int | Tensor | None = None,
        attention_mask: Tensor | None = None,
        score: Literal["logit", "logprob", "prob"] = "logit",
        foil_ids: int | Tensor | None = None,
        steps: int | Literal["auto"] = 50,
        rule: str = "gausslegendre",
        batch_size: int | Literal["auto"] = "auto",
        progress: bool = False,
        *,
        tol: float = 0.01,
        max_steps: int = 512,
        saturation: float = 0.9,
        sampling: Literal["adaptive", "uniform"] = "adaptive",
        coarse_steps: int = 50,
        conductance_layers: Sequence[LayerSpec] | None = None,
    ) -> SequenceResult:
        """Return each target token's attribution to every position before it, with its
        completeness gap. ``target_ids`` ``(B, T)`` forces the continuation; else
        ``max_new_tokens`` are generated greedily. ``score``: the target's logit, log-probability
        or probability; with ``foil_ids`` (an id, or ``(B, T)``) the score minus the foil's
        (for "logprob" that is the logit difference). ``baselines``: token ids, an int for every
        position or a ``(B, L)`` / ``(L,)`` tensor; default the model's
        ``config.pad_token_id`` when set, else 0. Encoder-decoders: positions are the encoder's
        then the decoder's (its start token, then the targets before the last). ``progress``:
        a bar on stderr counting the backwards (path points times targets).

        Per method: "ig" with ``steps="auto"`` refines each target's own path (``tol``,
        ``max_steps`` as in ``IntegratedGradients``; a point one target asks for serves all,
        ``info["gradient_evaluations"]`` ``(B, T)`` counts each target's nodes,
        ``info["points"]`` ``(B,)`` the forwards run); "left-ig" cuts each target's path at
        its own ``a*`` (``saturation``); "idg" with ``sampling="adaptive"`` places the
        ``steps`` samples by the output change of all targets pooled (each target's change
        normalised to sum 1; with one target exactly IDG's placement), so they share one
        path; "idgi" walks the nodes ``k / steps`` and gives each target's change over a step to
        the positions by their share of that target's squared gradient (``rule`` unused).
        ``conductance_layers`` (fixed-rule "ig" only): the total conductance of every
        neuron of these layers' inputs (e.g. ``mlp_neurons(model)``, the MLPs' hidden units)
        per target, ``(B, T, *neuron shape)`` in ``result.conductance``, from the same pass.

        Cost: two forwards for the ends, then per example ``steps`` forwards and ``steps * T``
        backwards (one forward per path point for all targets); "idg" adaptive adds
        ``coarse_steps - 2`` forwards, "left-ig" ``T`` forwards at the cuts, conductance
        forwards at the rule's cell edges; DeepLIFT: two forwards and ``T`` backwards.
        """
        check_eval_mode(self.model)
        if conductance_layers is not None and (self.method != "ig" or steps == "auto"):
            raise ValueError("conductance_layers needs method='ig' with a fixed number of steps")
        if self.method != "ig" and steps == "auto":
            raise ValueError(f"steps='auto' is for method='ig', not {self.method!r}")
        if steps != "auto":
            check_steps(steps)
        if self.method == "left-ig":
            saturation = check_saturation(saturation)
        if self.method == "idg":
            check_positive_int(coarse_steps, "coarse_steps", minimum=2)
            if sampling not in SAMPLINGS:
                raise ValueError(f"sampling must be one of {', '.join(SAMPLINGS)}, "
                                 f"got {sampling!r}")
        ids = _ids(input_ids, "input_ids")
        b = ids.shape[0]
        mask = torch.ones_like(ids) if attention_mask is None else \
            _ids(attention_mask, "attention_mask", tuple(ids.shape))
        _check_mask(mask)
        get = getattr(self.model, "get_input_embeddings", None)
        embeddings = get() if callable(get) else None
        vocabulary = getattr(embeddings, "num_embeddings", None)
        # an encoder-decoder may have a vocabulary per side (a translator's two languages)
        out_vocabulary = getattr(_part(self.model, "get_decoder").get_input_embeddings(),
                                 "num_embeddings", None) if self.seq2seq else vocabulary
        _check_vocabulary(ids, "input_ids", vocabulary)
        if score not in SCORES:
            raise ValueError(f"score must be one of {', '.join(SCORES)}, got {score!r}")
        if (target_ids is None) == (max_new_tokens is None):
            raise TypeError("give exactly one of target_ids (forced) or max_new_tokens "
                            "(generated)")
        if ids.shape[1] == 0:
            raise ValueError("input_ids needs at least one prompt token")
        dev = next(self.model.parameters()).device
        ids, mask = ids.to(dev), mask.to(dev)
        if b == 0:  # an empty batch: an empty result, no forward (a model cannot run 0 rows)
            n = check_positive_int(max_new_tokens, "max_new_tokens") if target_ids is None \
                else _ids(torch.as_tensor(target_ids), "target_ids").shape[1]
            targets = ids.new_zeros((0, n))
            dtype = next(self.model.parameters()).dtype
            return SequenceResult(torch.cat([ids, targets], 1), torch.cat([mask, targets], 1),
                                  targets, ids.new_zeros((0, n, ids.shape[1] + n), dtype=dtype),
                                  ids.new_zeros((0, n), dtype=dtype), None, None,
                                  {"score": score, "method": self.method,
                                   "prompt_length": ids.shape[1], "encoder_decoder": self.seq2seq})
        if not self.seq2seq:
            ids, mask = left_align(ids, mask)
        if target_ids is None:
            targets = self.generate(ids, mask, max_new_tokens)
        else:
            targets = _ids(torch.as_tensor(target_ids), "target_ids").to(dev)
            if targets.shape[0] != b:
                raise ValueError(f"target_ids has {targets.shape[0]} rows, expected {b}")
            _check_vocabulary(targets, "target_ids", out_vocabulary)
        n_prompt, n_targets = ids.shape[1], targets.shape[1]
        foil = None
        if foil_ids is not None:
            foil = torch.as_tensor(foil_ids, device=dev).long()
            if foil.dim() > 2 or (foil.dim() == 2 and tuple(foil.shape) != (b, n_targets)):
                raise ValueError(f"foil_ids must be one id or of shape {(b, n_targets)}, got "
                                 f"{tuple(foil.shape)}")
            foil = foil.expand(b, n_targets)
            _check_vocabulary(foil, "foil_ids", out_vocabulary)
        base = cast(Any, baselines)  # token ids; a (encoder, decoder) pair for seq2seq below
        if isinstance(base, Tensor) and not base.is_floating_point():
            if self.seq2seq and base.shape[-1] == n_prompt + n_targets:
                _check_vocabulary(base[..., :n_prompt], "baselines", vocabulary)
                _check_vocabulary(base[..., n_prompt:], "baselines", out_vocabulary)
            else:
                _check_vocabulary(base, "baselines", vocabulary)
        elif isinstance(base, int):
            for size in {vocabulary, out_vocabulary}:
                _check_vocabulary(torch.tensor([base]), "baselines", size)
        if base is None:
            pad = getattr(getattr(self.model, "config", None), "pad_token_id", None)
            base = 0 if pad is None else int(pad)
        if self.seq2seq:
            dec_in = torch.cat([targets.new_full((b, 1), self._start_id()), targets[:, :-1]], 1)
            x, kwargs = (ids, dec_in), {"attention_mask": mask}
            if isinstance(base, Tensor):  # one id per position: the encoder's, the decoder's
                both = cast(Tensor, base)
                if both.shape[-1] != n_prompt + n_targets:
                    raise ValueError(f"baselines has {both.shape[-1]} positions, expected "
                                     f"{n_prompt + n_targets} (encoder {n_prompt}, decoder "
                                     f"{n_targets})")
                base = (both[..., :n_prompt], both[..., n_prompt:])
            seq = torch.cat([ids, dec_in], 1)
            seq_mask = torch.cat([mask, torch.ones_like(dec_in)], 1)
            positions = torch.arange(n_targets, device=dev)
        else:
            seq = torch.cat([ids, targets], 1)
            seq_mask = torch.cat([mask, torch.ones_like(targets)], 1)
            kwargs = self._kwargs(seq_mask, n_targets + 1)
            x = seq
            # target t is read at position P - 1 + t: of the last T + 1 kept, the t-th
            positions = torch.arange(n_targets, device=dev) + (0 if self._keep else n_prompt - 1)

        head = _Head(self.model)

        def scores_of(logits: Tensor, examples: Tensor) -> Tensor:
            raw = logits[:, positions]
            sel = raw
            if score == "logprob":
                sel = raw.log_softmax(-1)
            elif score == "prob":
                sel = raw.softmax(-1)
            val = sel.gather(2, targets[examples][..., None])[..., 0]
            if foil is not None:
                val = val - sel.gather(2, foil[examples][..., None])[..., 0]
            if head.read(logits):
                return head.rowwise(val, raw, positions, score, targets[examples],
                                    None if foil is None else foil[examples])
            return val

        target = Target(b, fn=scores_of, outputs=n_targets)
        s = setup(self.call, x, base, target, None, kwargs, integers=True)
        if s.k != 1:
            raise ValueError("SequenceAttribution takes one baseline sequence per example")
        info: dict[str, Any] = {"score": score, "method": self.method,
                                "prompt_length": n_prompt, "foil_ids": foil,
                                "encoder_decoder": self.seq2seq}
        conductance: dict[str, Tensor] = {}
        alphas = weights = None
        if self.method == "deeplift":
            layers = [resolve_layer(self.call, name) for name in self.layers]
            diffs, grads, out, out_ref, counts, _ = layer_pass(s, layers, "rescale", False,
                                                            batch_size)
            scores = _positions(grads, diffs)
            out_delta = out - out_ref
            delta = scores.sum(-1) - out_delta
            info["rules"] = dict(counts)
        else:
            options = {"steps": steps, "rule": rule, "saturation": saturation,
                       "sampling": sampling, "coarse_steps": coarse_steps, "tol": tol,
                       "max_steps": max_steps}
            with guarded(self.model), head.active():
                path = self._path(s, rule, steps, batch_size, progress)
                if self.method == "input-x-gradient":
                    integrator = GradientIntegral()
                else:
                    integrator = registry.integrator(self.method, options)
                taps, on_chunk, conductance = self._conductance(path, conductance_layers or ())
                (integral,) = integrate(path, [integrator], taps, on_chunk)
            scores = torch.cat(integral.attributions, 2)
            delta, alphas, weights = integral.delta, integral.alphas, integral.weights
            out_delta = path.mean(path.out_delta())
            if self.method == "idg" and isinstance(alphas, list):  # one set per example
                alphas, weights = torch.stack(alphas), torch.stack(weights)
            info.update(integral.info)
        info["output_delta"] = out_delta
        return SequenceResult(seq, seq_mask, targets, scores, delta, alphas, weights, info,
                              conductance)


def _part(model: nn.Module, getter: str) -> Any:
    """An encoder-decoder's ``get_encoder()`` or ``get_decoder()`` (HuggingFace's names)."""
    return getattr(model, getter)()


def _positions(grads: Sequence[Tensor], diffs: Sequence[Tensor]) -> Tensor:
    """``(n, T, L)``: each target's gradient times ``e - e'`` summed over the embedding, per
    layer (encoder, decoder) and concatenated along positions."""
    acc = accumulation_dtype(grads[0].dtype)  # float32 sums for a half-precision model
    return torch.cat([_embedding_sum(g.to(acc) * d[:, None].to(acc))
                      for g, d in zip(grads, diffs)], 2)


def _embedding_sum(t: Tensor) -> Tensor:
    """``(n, T, L, d) -> (n, T, L)``: what a sequence keeps of each point, per position."""
    return t.flatten(3).sum(-1)


def mlp_neurons(model: nn.Module) -> list[str]:
    """The MLP hidden units of every transformer block, as the names of the layers whose
    input they are (the MLPs' output projections: GPT-2 ``mlp.c_proj``, Llama ``mlp.down_proj``,
    T5 ``DenseReluDense.wo``, BART/Marian ``fc2``), in model order, for
    ``conductance_layers``. Raises ``ValueError`` when none is found."""
    found = [name for name, _ in model.named_modules()
             if name.endswith((".mlp.c_proj", ".mlp.down_proj", ".DenseReluDense.wo", ".fc2"))]
    if not found:
        raise ValueError(f"no MLP output projection found in {type(model).__name__}: give "
                         "conductance_layers= the layers whose inputs are the MLP neurons")
    return found
