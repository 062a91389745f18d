"""Real photos bundled inside installed packages (scikit-image, matplotlib)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image
from torch import Tensor

from .efficientnet import preprocess, to_pil

SKIMAGE_PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "camera")
PHOTOS = (*SKIMAGE_PHOTOS, "grace_hopper")


def photo(name: str) -> Image.Image:
    """The bundled photo ``name`` (one of ``PHOTOS``) as an RGB PIL image; grayscale is
    repeated over three channels. Cost: one file read and decode.
    """
    if name in SKIMAGE_PHOTOS:
        import skimage.data

        return to_pil(getattr(skimage.data, name)())
    if name == "grace_hopper":
        from matplotlib import cbook

        with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as img:
            return to_pil(img)
    raise ValueError(f"unknown photo {name!r}; available: {', '.join(PHOTOS)}")


def photo_batch(names: Sequence[str] = PHOTOS) -> Tensor:
    """The named photos preprocessed for EfficientNet-Lite0, shape ``(n, 3, 224, 224)``."""
    if isinstance(names, str):
        names = [names]
    return torch.stack([preprocess(photo(n)) for n in names])
