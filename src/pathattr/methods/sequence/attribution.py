"""``SequenceAttribution``: every target token on one shared path in embedding space
(the package docstring says how)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Concatenate, Literal, ParamSpec, TypeVar, cast

import torch
from torch import Tensor, nn

from ... import registry
from ...call import Setup, layer_path, setup
from ...engine import guarded
from ...errors import SettingError
from ...forward import choose_output
from ...integrate import Integral, Path, integrate
from ...layers import LayerSpec, batch_dims, resolve_layer
from ...targets import Target
from ...validate import check_eval_mode, check_positive_int
from ..conductance import TargetConductanceIntegral
from .head import _Head
from .result import SequenceResult
from .scores import HEAD_FORMS, Score, ScoreInputs, resolve_score
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
#: The methods it takes (``registry.sequence_methods``), when the package was imported.
METHODS = registry.sequence_methods()


@dataclass
class Request:
    """One call's sequences, checked: ``ids``, ``mask`` ``(B, P)`` the prompts (left-aligned
    for a causal LM), ``targets`` ``(B, T)``, ``foil`` ``(B, T)`` or None, ``contrast``
    ``(B, T, V)`` the contrast prompt's logits or None; ``x``, ``kwargs``: the model's
    inputs on the path and its other arguments; ``positions``: where each target's logits
    are read; ``seq``, ``seq_mask``: the explained sequence; ``base``: the baseline ids."""

    ids: Tensor
    mask: Tensor
    targets: Tensor
    foil: Tensor | None = None
    contrast: Tensor | None = None
    x: Any = None
    kwargs: dict | None = None
    positions: Tensor | None = None
    seq: Tensor | None = None
    seq_mask: Tensor | None = None
    base: Any = None


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
    (``embed(ids.T)``, ``(L, B, d)``). ``options``: the method's own (``saturation=`` for
    "left-ig", ``sampling=`` for "idg", ``tol=`` for "ig" with ``steps="auto"``, ...; see
    ``pathattr.registry.integrator``), checked here, and overridable per ``attribute`` call.
    """

    def __init__(self, model: nn.Module, method: str = "ig", layer: LayerSpec | None = None,
                 batch_dim: int = 0, **options: Any):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        known = registry.sequence_methods()
        name = registry.canonical(method, known)
        if name not in known:
            raise ValueError(f"method must be one of {', '.join(known)}, got {method!r}")
        self.model, self.method = model, str(name)
        self.options = self._checked(options)
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

    def _decoder_input(self, targets: Tensor) -> Tensor:
        """An encoder-decoder's decoder ids for teacher-forced ``targets`` ``(B, T)``: its
        start token, then the targets before the last (``targets`` may be ``(B, 0)``)."""
        start = getattr(self.model.config, "decoder_start_token_id", None)
        if start is None:
            raise ValueError("the model's config has no decoder_start_token_id")
        return torch.cat([targets.new_full((len(targets), 1), int(start)), targets[:, :-1]], 1)

    @contextmanager
    def _layout(self):
        """The embeddings' batch dimension declared to the taps (``batch_dim``)."""
        if not self.batch_dim:
            yield
            return
        modules = {resolve_layer(self.call, name)[1]: self.batch_dim for name in self.layers}
        with batch_dims(modules):
            yield

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
        dec = self._decoder_input(ids[:, :0]) if self.seq2seq else None
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

    def _checked(self, options: dict) -> dict:
        """``options`` after the method's own check (``SettingError`` for an unknown one)."""
        if registry.METHODS[self.method].integrator:
            registry.integrator(self.method, {}, options)
        elif options:
            raise SettingError(f"method {self.method!r} takes no options here, got "
                               f"{', '.join(options)}", param="method")
        return options

    @_in_layout
    def attribute(
        self,
        input_ids: Tensor,
        target_ids: Tensor | None = None,
        max_new_tokens: int | None = None,
        baselines: int | Tensor | None = None,
        attention_mask: Tensor | None = None,
        score: str | Score = "logit",
        foil_ids: int | Tensor | None = None,
        steps: int | Literal["auto"] = "auto",
        rule: str = "gausslegendre",
        batch_size: int | Literal["auto"] = "auto",
        progress: bool = False,
        *,
        contrast_ids: Tensor | None = None,
        contrast_mask: Tensor | None = None,
        conductance_layers: Sequence[LayerSpec] | None = None,
        **options: Any,
    ) -> SequenceResult:
        """Return each target token's attribution to every position before it, with its
        completeness gap. ``target_ids`` ``(B, T)`` forces the continuation; else
        ``max_new_tokens`` are generated greedily. ``score``: a name in ``scores.SCORES`` or
        a callable of ``scores.ScoreInputs`` returning ``(n, T)``; ``foil_ids`` (an id, or
        ``(B, T)``) and ``contrast_ids`` (a contrast prompt ``(B, P')``, with
        ``contrast_mask``) are what the contrastive ones compare against. ``baselines``: token
        ids (an int, ``(B, L)`` or ``(L,)``; default the pad id, else 0). ``steps="auto"``:
        the error-controlled rule where the method has one, else its default count.
        ``options`` override the constructor's for this call. ``conductance_layers``: the
        total conductance of these layers' input neurons per target, ``(B, T, *shape)`` in
        ``result.conductance``, from the same pass (``mlp_neurons(model)``: the MLPs').
        Encoder-decoders: positions are the encoder's, then the decoder's. ``progress``: a
        bar on stderr. Cost: two forwards for the ends, then per example ``steps`` forwards
        and ``steps * T`` backwards, and what the method adds (the package docstring).
        """
        check_eval_mode(self.model)
        name, fn = resolve_score(score)
        options = {**self.options, **self._checked(options)}
        req = self._request(input_ids, target_ids, max_new_tokens, attention_mask, foil_ids)
        info: dict[str, Any] = {"score": name, "method": self.method,
                                "prompt_length": req.ids.shape[1], "foil_ids": req.foil,
                                "encoder_decoder": self.seq2seq}
        if len(req.ids) == 0:  # an empty batch: an empty result, no forward
            return _empty(req, info, next(self.model.parameters()).dtype)
        if contrast_ids is not None:
            req.contrast = self._contrast(req, contrast_ids, contrast_mask)
        self._inputs(req, baselines)
        head = _Head(self.model)
        s = setup(self.call, req.x, req.base, self._target(req, fn, head), None, req.kwargs,
                  integers=True)
        if s.k != 1:
            raise ValueError("SequenceAttribution takes one baseline sequence per example")
        with guarded(self.model):
            integral, conductance = self._run(s, head, steps, rule, batch_size, progress,
                                              conductance_layers, options)
        return _result(req, integral, info, conductance)

    def _request(self, input_ids: Tensor, target_ids: Tensor | None,
                 max_new_tokens: int | None, attention_mask: Tensor | None,
                 foil_ids: int | Tensor | None) -> Request:
        """The prompts, targets (generated when not given) and foils, checked against the
        vocabularies. Cost: ``max_new_tokens`` forwards when generating."""
        ids = _ids(input_ids, "input_ids")
        b = ids.shape[0]
        mask = torch.ones_like(ids) if attention_mask is None else \
            _ids(attention_mask, "attention_mask", tuple(ids.shape))
        _check_mask(mask)
        _check_vocabulary(ids, "input_ids", self._vocabulary(False))
        if (target_ids is None) == (max_new_tokens is None):
            raise TypeError("give exactly one of target_ids (forced) or max_new_tokens "
                            "(generated)")
        if ids.shape[1] == 0:
            raise ValueError("input_ids needs at least one prompt token")
        dev = next(self.model.parameters()).device
        ids, mask = ids.to(dev), mask.to(dev)
        if b == 0:
            n = check_positive_int(max_new_tokens, "max_new_tokens") if target_ids is None \
                else _ids(torch.as_tensor(target_ids), "target_ids").shape[1]
            return Request(ids, mask, ids.new_zeros((0, n)))
        if not self.seq2seq:
            ids, mask = left_align(ids, mask)
        if target_ids is None:
            targets = self.generate(ids, mask, max_new_tokens)
        else:
            targets = _ids(torch.as_tensor(target_ids), "target_ids").to(dev)
            if targets.shape[0] != b:
                raise ValueError(f"target_ids has {targets.shape[0]} rows, expected {b}")
            _check_vocabulary(targets, "target_ids", self._vocabulary(True))
        foil = None
        if foil_ids is not None:
            foil = torch.as_tensor(foil_ids, device=dev).long()
            if foil.dim() > 2 or (foil.dim() == 2 and tuple(foil.shape) != targets.shape):
                raise ValueError(f"foil_ids must be one id or of shape "
                                 f"{tuple(targets.shape)}, got {tuple(foil.shape)}")
            foil = foil.expand(*targets.shape)
            _check_vocabulary(foil, "foil_ids", self._vocabulary(True))
        return Request(ids, mask, targets, foil)

    def _vocabulary(self, output: bool) -> int | None:
        """The input (or, ``output``, the target) vocabulary's size, where the model says it:
        an encoder-decoder may have one per side (a translator's two languages)."""
        part = _part(self.model, "get_decoder") if output and self.seq2seq else self.model
        get = getattr(part, "get_input_embeddings", None)
        return getattr(get() if callable(get) else None, "num_embeddings", None)

    def _inputs(self, req: Request, baselines: int | Tensor | None) -> None:
        """``req``'s path inputs, forward arguments, read positions and baselines."""
        n_prompt, n_targets = req.ids.shape[1], req.targets.shape[1]
        base = self._baselines(baselines, n_prompt)
        if self.seq2seq:
            dec_in = self._decoder_input(req.targets)
            req.x, req.kwargs = (req.ids, dec_in), {"attention_mask": req.mask}
            if isinstance(base, Tensor):  # one id per position: the encoder's, the decoder's
                if base.shape[-1] != n_prompt + n_targets:
                    raise ValueError(f"baselines has {base.shape[-1]} positions, expected "
                                     f"{n_prompt + n_targets} (encoder {n_prompt}, decoder "
                                     f"{n_targets})")
                base = (base[..., :n_prompt], base[..., n_prompt:])
            req.seq = torch.cat([req.ids, dec_in], 1)
            req.seq_mask = torch.cat([req.mask, torch.ones_like(dec_in)], 1)
            req.positions = torch.arange(n_targets, device=req.ids.device)
        else:
            req.x = req.seq = torch.cat([req.ids, req.targets], 1)
            req.seq_mask = torch.cat([req.mask, torch.ones_like(req.targets)], 1)
            req.kwargs = self._kwargs(req.seq_mask, n_targets + 1)
            req.positions = self._read_at(n_prompt, n_targets, req.ids.device)
        req.base = base

    def _read_at(self, n_prompt: int, n_targets: int, device: torch.device) -> Tensor:
        """Where a causal LM's logits for target ``t`` are: position ``P - 1 + t``, or of the
        last ``T + 1`` kept (``logits_to_keep``), the ``t``-th."""
        return torch.arange(n_targets, device=device) + (0 if self._keep else n_prompt - 1)

    def _baselines(self, baselines: int | Tensor | None, n_prompt: int) -> Any:
        """The baseline ids, checked against the vocabularies (default: the pad id, else 0)."""
        inputs, outputs = self._vocabulary(False), self._vocabulary(True)
        if isinstance(baselines, Tensor) and not baselines.is_floating_point():
            if self.seq2seq and baselines.shape[-1] > n_prompt:
                _check_vocabulary(baselines[..., :n_prompt], "baselines", inputs)
                _check_vocabulary(baselines[..., n_prompt:], "baselines", outputs)
            else:
                _check_vocabulary(baselines, "baselines", inputs)
        elif isinstance(baselines, int):
            for size in {inputs, outputs}:
                _check_vocabulary(torch.tensor([baselines]), "baselines", size)
        if baselines is None:
            pad = getattr(getattr(self.model, "config", None), "pad_token_id", None)
            return 0 if pad is None else int(pad)
        return baselines

    def _contrast(self, req: Request, contrast_ids: Tensor, contrast_mask: Tensor | None
                  ) -> Tensor:
        """The contrast prompt's logits for ``req``'s targets, ``(B, T, V)``: a constant of
        the call. Cost: one forward per example."""
        ids = _ids(contrast_ids, "contrast_ids").to(req.ids.device)
        if len(ids) != len(req.ids) or ids.shape[1] == 0:
            raise ValueError(f"contrast_ids must have {len(req.ids)} rows and a token, got "
                             f"shape {tuple(ids.shape)}")
        mask = torch.ones_like(ids) if contrast_mask is None else \
            _ids(contrast_mask, "contrast_mask", tuple(ids.shape)).to(ids.device)
        _check_mask(mask)
        _check_vocabulary(ids, "contrast_ids", self._vocabulary(False))
        return self.next_logits(ids, mask, req.targets)

    def next_logits(self, ids: Tensor, mask: Tensor, targets: Tensor) -> Tensor:
        """The logits ``(B, T, V)`` predicting each of ``targets`` after the prompts ``ids``
        (``mask``), teacher-forced: one plain forward, without gradients."""
        n = targets.shape[1]
        with guarded(self.model), torch.no_grad():
            if self.seq2seq:
                logits = self.call(ids, self._decoder_input(targets), mask)
                return logits[:, :n]
            ids, mask = left_align(ids, mask)
            seq_mask = torch.cat([mask, torch.ones_like(targets)], 1)
            logits = choose_output(self.model(torch.cat([ids, targets], 1),
                                              **self._kwargs(seq_mask, n + 1)))
            return logits[:, self._read_at(ids.shape[1], n, ids.device)]

    @staticmethod
    def _target(req: Request, score: Score, head: _Head) -> Target:
        """Each row's ``T`` scores of a forward's logits (through ``head``'s closed form for
        the built-ins that have one)."""
        form = HEAD_FORMS.get(score)
        positions, targets = req.positions, req.targets
        assert positions is not None  # set by _inputs

        def scores_of(logits: Tensor, examples: Tensor) -> Tensor:
            raw = logits[:, positions]
            step = ScoreInputs(raw, targets[examples],
                               None if req.foil is None else req.foil[examples],
                               None if req.contrast is None else req.contrast[examples])
            val = score(step)
            if not isinstance(val, Tensor) or tuple(val.shape) != tuple(step.targets.shape):
                raise ValueError(f"a score must return one value per row and target, shape "
                                 f"{tuple(step.targets.shape)}, got "
                                 f"{tuple(val.shape) if isinstance(val, Tensor) else val!r}")
            if form is not None and head.read(logits):
                return head.rowwise(val, raw, positions, form, step.targets, step.foil)
            return val

        return Target(len(req.ids), fn=scores_of, outputs=targets.shape[1])

    def _run(self, s: Setup, head: _Head, steps: int | str, rule: str, batch_size: int | str,
             progress: bool, conductance_layers: Sequence[LayerSpec] | None, options: dict
             ) -> tuple[Integral, dict[str, Tensor]]:
        """The method on the embeddings' path (``head``'s closed form active), with the
        conductance integrator beside it; or its layer-space function."""
        layer_fn = registry.layer_function(self.method)
        if layer_fn is not None:
            layers = [resolve_layer(self.call, name) for name in self.layers]
            settings = {**registry.METHODS[self.method].init, **options}  # the entry's own
            return layer_fn(s, layers, settings, batch_size, _embedding_sum), {}
        integrator = registry.integrator(self.method, {"steps": steps, "rule": rule}, options)
        beside = []
        if conductance_layers is not None:
            if not integrator.rides:
                raise ValueError("conductance_layers needs a method on a shared pass of fixed "
                                 "steps, e.g. method='ig' with steps=50")
            beside = [TargetConductanceIntegral(conductance_layers, self.model,
                                                integrator.nodes)]
        with head.active():
            engine = s.engine(batch_size, channels_last=False)
            f1, f0 = layer_path(engine, self.layers)
            path = Path.of(s, engine, f0, f1, integrator.nodes, reduce=_embedding_sum,
                           progress=progress)
            integral, *rest = integrate(path, [integrator, *beside])
        return integral, rest[0].info["conductance"] if rest else {}


def _result(req: Request, integral: Integral, info: dict, conductance: dict[str, Tensor]
            ) -> SequenceResult:
    """The call's result from the method's ``integral`` (adaptive IG's nodes stay a list:
    one set per path, of its own length)."""
    alphas, weights = integral.alphas, integral.weights
    if isinstance(alphas, list) and len({len(a) for a in alphas}) == 1:
        alphas, weights = torch.stack(alphas), torch.stack(weights)  # one set per example
    assert req.seq is not None and req.seq_mask is not None  # set by _inputs
    return SequenceResult(req.seq, req.seq_mask, req.targets,
                          torch.cat(integral.attributions, 2), integral.delta,
                          cast(Any, alphas), cast(Any, weights), {**info, **integral.info},
                          conductance)


def _empty(req: Request, info: dict, dtype: torch.dtype) -> SequenceResult:
    """The result of an empty batch (a model cannot run zero rows)."""
    ids, mask, targets = req.ids, req.mask, req.targets
    n = targets.shape[1]
    return SequenceResult(torch.cat([ids, targets], 1), torch.cat([mask, targets], 1), targets,
                          ids.new_zeros((0, n, ids.shape[1] + n), dtype=dtype),
                          ids.new_zeros((0, n), dtype=dtype), None, None,
                          {k: v for k, v in info.items() if k != "foil_ids"})


def _part(model: nn.Module, getter: str) -> Any:
    """An encoder-decoder's ``get_encoder()`` or ``get_decoder()`` (HuggingFace's names)."""
    return getattr(model, getter)()


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
