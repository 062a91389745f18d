"""Items of a dataset for ``pathattr run``: a directory of images or an NPZ of model inputs.

Reading (on the process that owns the data) and decoding (on the worker that owns the model) are
separate, so a Ray cluster ships raw bytes and decodes where the model is. A bad item never
raises out of here: its ``Raw.error`` or ``decode``'s ``ItemError`` carries the reason.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from .errors import one_line
from .files import read_regular
from .images import to_rgb

#: File suffixes read as images from a directory (anything else there is not an item).
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                  ".pgm"}


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from .zoo import digits_data

    _, _, x, y = digits_data()
    return x.numpy(), y.numpy()


def _mnist1d() -> tuple[np.ndarray, np.ndarray]:
    from .zoo.mnist1d import mnist1d_data

    _, _, x, y = mnist1d_data()
    return x.numpy(), y.numpy()


#: Held-out sets inside installed packages, by name (``--data digits``): the test split's
#: inputs ``x`` and labels ``y``, read like an NPZ with ``x`` and ``y`` (a file or folder of
#: that name in the working directory wins).
PACKAGED = {"digits": _digits, "mnist1d": _mnist1d}


def data_id(data: str | Path) -> str:
    """How a run records its data: a packaged set's name, else the absolute path."""
    return str(data) if is_packaged(data) else str(Path(data).resolve())


def is_packaged(data: str | Path) -> bool:
    return str(data) in PACKAGED and not Path(data).exists()


class ItemError(Exception):
    """One item cannot be used; the message is the reason recorded in the results index."""


@dataclass(frozen=True)
class Raw:
    """One item as read: an image file's bytes, or an array already in the model's input space;
    ``error`` set instead when reading failed. ``label`` from the NPZ's ``y``, if any."""

    key: str
    payload: bytes | np.ndarray | None
    label: int | None = None
    error: str | None = None


class Dataset:
    """Stable item keys in a fixed order, and ``read(keys)``.

    ``DIR``: every image file below it (recursive, hidden files skipped), key = its path relative
    to ``DIR``. ``NPZ``: with an array ``x`` (and optional labels ``y``), item ``i`` is ``x[i]``,
    key ``str(i)``; otherwise every array is one item, key = its name (shapes may differ). A
    name of ``PACKAGED`` (no such path): that held-out set, read like an NPZ with ``x``, ``y``.
    Raises ``FileNotFoundError`` / ``ValueError`` for a path that is neither.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._npz = None
        self._keys: list[str] | None = None  # a folder's: listed when first asked for
        if is_packaged(path):
            self._npz, self._stacked = {}, True
            self._x, self._labels = PACKAGED[str(path)]()
            self._keys = [str(i) for i in range(len(self._x))]
        elif self.path.is_file():
            if not zipfile.is_zipfile(self.path):
                raise ValueError(f"{str(self.path)!r} is neither a directory nor an NPZ file")
            self._npz = np.load(self.path, allow_pickle=False)
            names = self._npz.files
            self._stacked = "x" in names
            self._x = self._npz["x"] if self._stacked else None  # decompressed once
            self._labels = self._npz["y"] if self._stacked and "y" in names else None
            self._keys = [str(i) for i in range(len(self._x))] if self._stacked else list(names)
        elif not self.path.is_dir():
            raise FileNotFoundError(f"no such file or directory: {str(self.path)!r} (nor one of "
                                    f"the packaged sets {', '.join(PACKAGED)})")

    @property
    def keys(self) -> list[str]:
        """Every item's key, in a fixed order. Cost for a directory: one walk, the first time."""
        if self._keys is None:
            files = (p for p in self.path.rglob("*")
                     if p.suffix.lower() in IMAGE_SUFFIXES and not any(
                         part.startswith(".") for part in p.relative_to(self.path).parts))
            self._keys = sorted(p.relative_to(self.path).as_posix() for p in files)
        return self._keys

    def read(self, keys: list[str]) -> list[Raw]:
        """The raw items for ``keys`` (each of ``self.keys``). Cost: reading their bytes (an NPZ's
        ``x`` is read once, when the dataset is opened)."""
        return [self._read(k) for k in keys]

    def _read(self, key: str) -> Raw:
        try:
            if self._npz is None:
                # a key from a results index is read, never believed: it must name a regular
                # file inside the data folder
                return Raw(key, read_regular(self.path / key, inside=self.path))
            if not self._stacked:
                return Raw(key, self._npz[key])
            i = int(key)
            label = None if self._labels is None else int(self._labels[i])
            return Raw(key, self._x[i], label)
        except Exception as e:  # an unreadable item fails alone, whatever the reason
            return Raw(key, None, error=f"cannot read {key}: {one_line(e)}")


def decode(raw: Raw, preprocess: Callable[[Image.Image], Tensor]) -> Tensor:
    """The model input ``(C, H, W)``-like tensor of one item: image bytes through the model's
    ``preprocess``, arrays as float32 unchanged. Raises ``ItemError`` for anything wrong with
    the item (unreadable, too large to decode safely, not numeric, NaN or inf, or a failing
    ``preprocess``), so one bad item never stops a run. Cost: one decode."""
    if raw.error is not None:
        raise ItemError(raw.error)
    if isinstance(raw.payload, np.ndarray):
        if not np.issubdtype(raw.payload.dtype, np.number):
            raise ItemError(f"array of dtype {raw.payload.dtype} is not numeric")
        x = np.array(raw.payload, dtype=np.float32)
        if not np.isfinite(x).all():
            raise ItemError(f"array holds {int((~np.isfinite(x)).sum())} NaN or inf values")
        return torch.from_numpy(x)
    try:
        with Image.open(io.BytesIO(raw.payload)) as img:
            x = preprocess(to_rgb(img))
    except UnidentifiedImageError:
        raise ItemError(f"cannot read {raw.key} as an image: not a format Pillow knows") from None
    except Exception as e:  # broken files raise anything: SyntaxError, DecompressionBombError
        reason = re.sub(r"<_io\.BytesIO object at 0x[0-9a-f]+>", raw.key, one_line(e))
        raise ItemError(f"cannot read {raw.key} as an image: {reason}") from None
    if not torch.isfinite(x).all():
        raise ItemError(f"{raw.key}: preprocessing gave NaN or inf values")
    return x


