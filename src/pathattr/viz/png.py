"""PNG bytes from pixel arrays and matplotlib figures (Agg, no pyplot, no global state)."""

from __future__ import annotations

import io
import warnings

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image


def array_png(rgb: np.ndarray) -> bytes:
    """Encode an ``(H, W, 3)`` uint8 array (or floats in [0, 1]) as PNG of exactly H x W pixels."""
    a = np.asarray(rgb)
    if a.dtype != np.uint8:
        a = (np.clip(a, 0, 1) * 255).round().astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def figure_png(fig: Figure, dpi: float = 100) -> bytes:
    """Render ``fig`` with Agg as PNG of ``figsize * dpi`` pixels (no tight cropping, so sizes
    are predictable)."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # a token no installed font can draw is a box in the picture; its text stays in the
        # report and the JSON, so the warning per glyph is noise
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
