"""Where a model's components live: each ``Site`` is one tapped activation (a module's output,
or its input) and the components it holds — a whole layer, its attention heads, or its units.

Heads are read where they are still separate: the input of the attention's output projection
(Hugging Face: ``c_proj`` / ``o_proj`` / ``out_proj``, heads concatenated head-major on the
last dimension) or TransformerLens's ``hook_z`` ``(B, pos, head, d_head)``. A head's
contribution to the attention output is its slice of that activation times its block of the
projection, a linear map, so a head's total conductance, gradient or patch is that of its
slice. MLPs are read at their output, neurons at the input of the MLP's output projection.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from ..layers import resolve_layer

#: what ``components=`` names: every head, every MLP's output, every MLP neuron
KINDS = ("heads", "mlps", "neurons")

_ATTENTION_OUT = ("c_proj", "o_proj", "out_proj", "dense")
_MLP_NAMES = ("mlp", "feed_forward", "ffn")
_MLP_OUT = ("c_proj", "down_proj", "fc2", "dense_4h_to_h", "w2", "fc_out")


@dataclass(frozen=True)
class Site:
    """One tapped activation ``(B, *S)`` and its components, in order.

    ``kind``: ``"whole"`` (one component), ``"heads"`` (``groups`` heads: the last dimension
    split head-major, or the head dimension of a ``(B, pos, head, d)`` activation) or
    ``"units"`` (each index of the last dimension)."""

    layer: str
    use_input: bool
    kind: Literal["whole", "heads", "units"]
    names: tuple[str, ...]

    @property
    def size(self) -> int:
        return len(self.names)

    def grouped(self, a: Tensor) -> Tensor:
        """``a`` ``(R, *S)`` viewed as ``(R, P, n, E)``: ``n`` components, each ``P x E``
        elements (``P``: positions and other leading dimensions)."""
        n = self.size
        if self.kind == "whole":
            return a.reshape(len(a), -1, 1, 1)
        if self.kind == "units":
            return a.reshape(len(a), -1, n, 1)
        if a.dim() >= 4 and a.shape[-2] == n:  # (R, pos, head, d)
            return a.reshape(len(a), -1, n, a.shape[-1])
        return a.reshape(len(a), -1, n, a.shape[-1] // n)

    def scores(self, a: Tensor) -> Tensor:
        """Per-element scores ``(R, *S)`` summed per component: ``(R, n)``."""
        return self.grouped(a).sum((1, 3))

    def mix(self, a: Tensor, other: Tensor, which: Tensor, amount: Tensor | float = 1.0
            ) -> Tensor:
        """``a`` with component ``which[r]`` of row ``r`` moved ``amount`` of the way to
        ``other`` (1: replaced); ``which[r] < 0`` leaves row ``r`` alone."""
        g, o = self.grouped(a), self.grouped(other)
        pick = (torch.arange(self.size, device=a.device) == which[:, None])[:, None, :, None]
        if isinstance(amount, Tensor):
            amount = amount.reshape(-1, 1, 1, 1).to(a.dtype)
        return torch.where(pick, g + amount * (o - g), g).reshape(a.shape)


def unwrap(model: Any) -> nn.Module:
    """The ``nn.Module`` behind ``model``: an nnsight ``NNsight`` / ``LanguageModel`` holds it
    as ``_model``; anything else must be a module."""
    if type(model).__module__.split(".")[0] == "nnsight":
        inner = getattr(model, "_model", None) or getattr(model, "_module", None)
        if isinstance(inner, nn.Module):
            return inner
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch nn.Module (a Hugging Face model, a "
                        f"TransformerLens HookedTransformer, or an nnsight wrapper of one), "
                        f"got {type(model).__name__}")
    return model


def is_lens(model: nn.Module) -> bool:
    """Whether ``model`` is a TransformerLens ``HookedTransformer`` (its hook points name
    every component)."""
    return type(model).__name__ == "HookedTransformer" and hasattr(model, "cfg")


def path_layer(model: nn.Module) -> str | None:
    """Where the input path runs for token ids: TransformerLens's ``hook_embed`` (positions
    are the same in both runs); None: the model's ``get_input_embeddings()``."""
    return "hook_embed" if is_lens(model) else None


def find(model: nn.Module, components: str | Sequence[str]) -> list[Site]:
    """The sites of ``components``: ``"heads"``, ``"mlps"``, ``"neurons"`` or a list of layer
    names (each one component, its output; ``name:input`` for its input). Raises
    ``ValueError`` naming ``components`` for an unknown kind, a layer named twice or a model
    without that kind of component."""
    if isinstance(components, str):
        if components not in KINDS:
            raise ValueError(f"components must be one of {', '.join(KINDS)} or a list of "
                             f"layer names, got {components!r}")
        sites = _lens(model, components) if is_lens(model) else _hf(model, components)
        if not sites:
            raise ValueError(f"components={components!r}: found none in "
                             f"{type(model).__name__} (name the layers instead)")
        return sites
    names = list(components)
    if not names or not all(isinstance(n, str) for n in names):
        raise ValueError("components: a list of layer names must be non-empty strings")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"components names {', '.join(twice)} more than once")
    sites = []
    for n in names:
        layer, _, part = n.partition(":")
        if part not in ("", "input"):
            raise ValueError(f"components: {n!r}: a layer name, or name:input")
        resolve_layer(model, layer)  # unknown names raise, naming the layer
        sites.append(Site(layer, part == "input", "whole", (n,)))
    return sites


def _lens(model: Any, kind: str) -> list[Site]:
    cfg = model.cfg
    blocks = range(cfg.n_layers)
    if kind == "heads":
        return [Site(f"blocks.{i}.attn.hook_z", False, "heads",
                     tuple(f"blocks.{i}.attn.head.{h}" for h in range(cfg.n_heads)))
                for i in blocks]
    if getattr(cfg, "attn_only", False):
        return []
    if kind == "mlps":
        return [Site(f"blocks.{i}.hook_mlp_out", False, "whole", (f"blocks.{i}.mlp",))
                for i in blocks]
    return [Site(f"blocks.{i}.mlp.hook_post", False, "units",
                 tuple(f"blocks.{i}.mlp.neuron.{j}" for j in range(cfg.d_mlp)))
            for i in blocks]


def _hf(model: nn.Module, kind: str) -> list[Site]:
    config = getattr(model, "config", None)
    n_heads = next((getattr(config, k) for k in ("num_attention_heads", "n_head", "num_heads")
                    if isinstance(getattr(config, k, None), int)), None)
    sites: list[Site] = []
    found: list[str] = []  # the blocks found: nothing inside one is another
    for name, module in model.named_modules():
        cls, last = type(module).__name__, name.rpartition(".")[2]
        if any(name.startswith(f + ".") for f in found):
            continue
        if kind == "heads" and cls.endswith("Attention") and n_heads:
            proj = _child(module, _ATTENTION_OUT)
            if proj is not None:
                found.append(name)
                sites.append(Site(f"{name}.{proj}", True, "heads",
                                  tuple(f"{name}.head.{h}" for h in range(n_heads))))
        elif kind != "heads" and (cls.endswith("MLP") or last in _MLP_NAMES):
            found.append(name)
            if kind == "mlps":
                sites.append(Site(name, False, "whole", (name,)))
                continue
            proj = _child(module, _MLP_OUT)
            width = _in_features(getattr(module, proj)) if proj else None
            if proj and width:
                sites.append(Site(f"{name}.{proj}", True, "units",
                                  tuple(f"{name}.neuron.{j}" for j in range(width))))
    return sites


def _child(module: nn.Module, names: Sequence[str]) -> str | None:
    return next((n for n in names if isinstance(getattr(module, n, None), nn.Module)), None)


def _in_features(proj: nn.Module) -> int | None:
    """A projection's input width: ``nn.Linear``'s ``in_features``, GPT-2 ``Conv1D``'s
    ``nx``."""
    for attr in ("in_features", "nx"):
        v = getattr(proj, attr, None)
        if isinstance(v, int):
            return v
    return None
