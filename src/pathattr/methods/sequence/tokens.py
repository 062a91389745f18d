"""Token ids, masks and vocabularies checked by name; prompts left-aligned; an
encoder-decoder called with both id sequences as inputs."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ...forward import choose_output


def _ids(t: object, name: str, shape: tuple[int, ...] | None = None) -> Tensor:
    if not isinstance(t, Tensor) or t.is_floating_point() or t.dtype == torch.bool \
            or t.dim() != 2:
        raise TypeError(f"{name} must be an integer tensor of shape (batch, tokens), got "
                        f"{getattr(t, 'dtype', type(t).__name__)} "
                        f"{tuple(t.shape) if isinstance(t, Tensor) else ''}")
    if shape is not None and tuple(t.shape) != shape:
        raise ValueError(f"{name} has shape {tuple(t.shape)}, expected {shape}")
    return t.long()


#: The most tokens ``max_new_tokens`` may ask for where the model states no context length.
MAX_NEW_TOKENS = 4096


def context_room(model: nn.Module, prompt_length: int) -> int | None:
    """How many new tokens the model's stated context (``n_positions`` or
    ``max_position_embeddings`` of its config) leaves: all of it for an encoder-decoder's
    decoder, else what follows the prompt; None if it states none."""
    config = getattr(model, "config", None)
    context = next((getattr(config, k) for k in ("n_positions", "max_position_embeddings")
                    if isinstance(getattr(config, k, None), int)), None)
    if context is None:
        return None
    return context - (0 if getattr(config, "is_encoder_decoder", False) else prompt_length)


def _check_mask(mask: Tensor) -> None:
    """An attention mask of 0s and 1s with at least one 1 per row; anything else would be
    reordered or explained as if it were a prompt."""
    if not bool(((mask == 0) | (mask == 1)).all()):
        bad = mask[(mask != 0) & (mask != 1)][0]
        raise ValueError(f"attention_mask must hold only 0 and 1, got {int(bad)}")
    empty = (mask.sum(1) == 0).nonzero()
    if len(empty):
        raise ValueError(f"attention_mask row {int(empty[0, 0])} is all 0: that example has no "
                         f"token to explain")


def _check_vocabulary(t: Tensor, name: str, size: int | None) -> None:
    """Token ids in ``[0, size)``: named here, not as an embedding's index error."""
    if size is None or t.numel() == 0:
        return
    bad = (t < 0) | (t >= size)
    if bool(bad.any()):
        raise ValueError(f"{name} holds id {int(t[bad][0])}, outside the vocabulary of "
                         f"{size} ids (0 to {size - 1})")


def left_align(ids: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Each row's real tokens moved to the right end, in order (left padding)."""
    order = torch.argsort(mask, dim=1, stable=True)
    return ids.gather(1, order), mask.gather(1, order)


class _EncoderDecoder(nn.Module):
    """An encoder-decoder called with its encoder and decoder ids positionally, so that both
    are inputs (and both lie on the path)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.training = False  # this wrapper's own flag only; the model's stays the user's

    def forward(self, input_ids: Tensor, decoder_input_ids: Tensor,
                attention_mask: Tensor | None = None) -> Tensor:
        return choose_output(self.model(input_ids=input_ids, attention_mask=attention_mask,
                                        decoder_input_ids=decoder_input_ids))
