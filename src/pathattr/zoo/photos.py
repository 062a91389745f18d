"""Real photos bundled inside installed packages (scikit-image, matplotlib)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image
from torch import Tensor

from .efficientnet import preprocess, to_pil

SKIMAGE_PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "camera")
#: scikit-learn's two sample photos (``load_sample_image``)
SKLEARN_PHOTOS = ("china", "flower")
PHOTOS = (*SKIMAGE_PHOTOS, "motorcycle", "grace_hopper", *SKLEARN_PHOTOS)


def photo(name: str) -> Image.Image:
    """The bundled photo ``name`` (one of ``PHOTOS``) as an RGB PIL image; grayscale is
    repeated over three channels. Cost: one file read and decode.
    """
    if name in SKIMAGE_PHOTOS:
        import skimage.data

        return to_pil(getattr(skimage.data, name)())
    if name == "motorcycle":  # the left view of scikit-image's stereo pair
        import skimage.data

        return to_pil(skimage.data.stereo_motorcycle()[0])
    if name in SKLEARN_PHOTOS:
        from sklearn.datasets import load_sample_image

        return to_pil(load_sample_image(f"{name}.jpg"))
    if name == "grace_hopper":
        from matplotlib import cbook

        with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as img:
            return to_pil(img)
    raise ValueError(f"unknown photo {name!r}; available: {', '.join(PHOTOS)}")


def photo_batch(names: Sequence[str] = PHOTOS, crop: int = 224) -> Tensor:
    """The named photos preprocessed for EfficientNet-Lite0 (``crop`` 224) or -Lite1 (240),
    shape ``(n, 3, crop, crop)``."""
    if isinstance(names, str):
        names = [names]
    return torch.stack([preprocess(photo(n), crop) for n in names])
