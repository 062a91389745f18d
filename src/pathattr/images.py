"""Pillow images as the models see them: any mode to 8-bit RGB."""

from __future__ import annotations

import numpy as np
from PIL import Image


def to_rgb(img: Image.Image) -> Image.Image:
    """``img`` as 8-bit RGB. High-bit-depth greys (16-bit PNG or TIFF: modes ``I;16*``, ``I``)
    are scaled by their bit depth to 0..255 where Pillow's ``convert`` would clip them to
    {0, 255}; float images (mode ``F``) are taken to lie in [0, 1]. Raises ``ValueError`` for
    a 32-bit integer image whose values exceed 16 bits (its scale is unknown)."""
    if img.mode.startswith("I;16") or img.mode in ("I", "F"):
        a = np.asarray(img, dtype=np.float64)
        if img.mode == "F":
            a = a * 255.0
        else:
            if img.mode == "I" and (a.min() < 0 or a.max() > 65535):
                raise ValueError(f"32-bit integer image with values {a.min():.0f}..{a.max():.0f}"
                                 f": no known scale; save it as 8- or 16-bit")
            a = a / 257.0  # 65535 -> 255
        img = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), mode="L")
    return img.convert("RGB")
