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
from typing import Any

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
        self._npz: Any = None  # an NpzFile, or {} for a packaged set
        self._x: np.ndarray | None = None  # the stacked items, when there is an ``x``
        self._labels: np.ndarray | None = None
        self._keys: list[str] | None = None  # a folder's: listed when first asked for
        self._files: dict[str, str] = {}  # a folder's keys -> names below it
        if is_packaged(path):
            self._npz = {}
            self._x, self._labels = PACKAGED[str(path)]()
            self._keys = [str(i) for i in range(len(self._x))]
        elif self.path.is_file():
            if not zipfile.is_zipfile(self.path):
                raise ValueError(f"{str(self.path)!r} is neither a directory nor an NPZ file")
            self._npz = np.load(self.path, allow_pickle=False)
            names = self._npz.files
            for name in names:
                _check_member(self._npz, name, self.path)
            self._keys = list(names)
            if "x" in names:
                x: np.ndarray = self._npz["x"]  # decompressed once
                if x.ndim == 0:
                    raise ValueError(f"{str(self.path)!r}: x is one number, not a stack of "
                                     f"items (an array whose first dimension counts them)")
                self._x, self._labels = x, self._npz["y"] if "y" in names else None
                self._keys = [str(i) for i in range(len(x))]
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
            # a name that is not UTF-8 (bytes kept as surrogates) gets a key that can be stored
            # and printed, its bytes as \xNN escapes; the file is read by its real name
            for p in files:
                real = p.relative_to(self.path).as_posix()
                key = real.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
                self._files[key] = real
            self._keys = sorted(self._files)
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
                name = self._files.get(key, key)
                return Raw(key, read_regular(self.path / name, inside=self.path))
            if self._x is None:
                return Raw(key, self._npz[key])
            i = int(key)
            return Raw(key, self._x[i], None if self._labels is None else _label(self._labels, i))
        except Exception as e:  # an unreadable item fails alone, whatever the reason
            return Raw(key, None, error=f"cannot read {key}: {one_line(e)}")


def _check_member(npz, name: str, path: Path) -> None:
    """Refuse an NPZ member whose header claims more data than the member holds (a header
    of 10^12 rows would otherwise be allocated before anything is read)."""
    info = npz.zip.getinfo(f"{name}.npy")
    with npz.zip.open(info) as f:
        version = np.lib.format.read_magic(f)
        read = {(1, 0): np.lib.format.read_array_header_1_0,
                (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read is None:
            raise ValueError(f"{str(path)!r}: member {name!r} has .npy format {version}, "
                             f"which pathattr does not read")
        shape, _, dtype = read(f)  # the header only
        claimed = int(np.prod(shape, dtype=object)) * dtype.itemsize
        held = info.file_size - f.tell()
    if dtype.hasobject or claimed > held:
        raise ValueError(f"{str(path)!r}: member {name!r} claims shape {shape} of {dtype} "
                         f"({claimed} bytes) but holds {held} bytes")


def _label(labels: np.ndarray, i: int) -> int:
    """Item ``i``'s label: a whole number that fits a class index, or ``ItemError``."""
    value = labels[i]
    if not np.issubdtype(labels.dtype, np.number) or np.iscomplexobj(labels):
        raise ItemError(f"label y[{i}] = {value} is not a number")
    if not np.isfinite(value) or not 0 <= value < 2**63 or value != int(value):
        raise ItemError(f"label y[{i}] = {value} is not a class index")
    return int(value)


def decode(raw: Raw, preprocess: Callable[[Image.Image], Tensor]) -> Tensor:
    """The model input ``(C, H, W)``-like tensor of one item: image bytes through the model's
    ``preprocess``, arrays as float32 unchanged. Raises ``ItemError`` for anything wrong with
    the item (unreadable, too large to decode safely, not numeric, NaN or inf, or a failing
    ``preprocess``), so one bad item never stops a run. Cost: one decode."""
    if raw.error is not None or raw.payload is None:
        raise ItemError(raw.error or f"{raw.key}: nothing was read")
    if isinstance(raw.payload, np.ndarray):
        if not np.issubdtype(raw.payload.dtype, np.number):
            raise ItemError(f"array of dtype {raw.payload.dtype} is not numeric")
        if np.iscomplexobj(raw.payload):  # a cast would drop the imaginary part silently
            raise ItemError(f"array of dtype {raw.payload.dtype} is complex; the model takes "
                            f"real inputs")
        if raw.payload.ndim == 0:
            raise ItemError("the item is one number, not an input array")
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


