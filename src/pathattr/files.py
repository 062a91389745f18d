"""Writing the user's folders safely: every output is written atomically and never through a
link, and names derived from inputs stay inside the folder.

``write_atomic`` writes to a temporary file in the destination's folder (created exclusively,
so a planted link is never followed), fsyncs it and renames it over the destination: a reader
sees the old file or the new one, a full disk or a kill leaves the old one intact, and a
destination that is a symbolic link is replaced by a regular file rather than written through
(its target is untouched). ``write_file`` and ``write_npz`` are its two common uses; the results
store writes its shards through it too.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

#: Characters kept in a name derived from an input; others become ``_``.
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")


def write_atomic(path: str | Path, write: Callable[[BinaryIO], object],
                 tmp: str | Path | None = None, durable: bool = False) -> Path:
    """Call ``write(f)`` on a new temporary file beside ``path``, fsync it and rename it over
    ``path``; return ``path``. ``tmp``: the temporary file's name (default: a fresh random one),
    for a caller that must find what a kill leaves. ``durable``: also fsync the folder, so the
    rename itself survives a crash. Cost: the write, one or two fsyncs and a rename."""
    path = Path(path)
    if tmp is None:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    else:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    return path


def write_file(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` (``str``: UTF-8) to ``path`` atomically (``write_atomic``)."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    return write_atomic(path, lambda f: f.write(payload))


def write_npz(path: str | Path, **arrays: np.ndarray) -> Path:
    """``np.savez_compressed`` through ``write_atomic``."""
    members: dict[str, Any] = arrays  # every keyword is a member, none an option
    return write_atomic(path, lambda f: np.savez_compressed(f, **members))


def safe_name(label: str, used: set[str]) -> str:
    """A file name for ``label`` that stays inside its folder and is not in ``used`` (which
    it joins): unsafe characters become ``_``, leading dots go (``..`` and hidden names), an
    empty result is ``input``, and a taken name gets ``-2``, ``-3``, ..."""
    base = _UNSAFE.sub("_", label).lstrip(".")[:120] or "input"
    name, i = base, 1
    while name.lower() in {u.lower() for u in used}:
        i += 1
        name = f"{base}-{i}"
    used.add(name)
    return name


def text_folder(*texts: str, limit: int = 40) -> str:
    """A folder name for the outputs about ``texts`` (a prompt, a sentence pair): their
    start made safe (``safe_name``'s characters) and a hash of them all, so that another text
    gets another folder and the same text the same one: ``"In_the_face_of-1a2b3c4d"``."""
    import hashlib

    start = _UNSAFE.sub("_", " | ".join(texts).strip()).strip("._")[:limit] or "text"
    digest = hashlib.sha256("\0".join(texts).encode()).hexdigest()[:8]
    return f"{start}-{digest}"


#: The largest item file a dataset run reads (an image file, before decoding).
MAX_READ_BYTES = 512 * 1024**2


def read_regular(path: str | Path, inside: str | Path | None = None,
                 limit: int = MAX_READ_BYTES) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes, which must resolve inside the
    folder ``inside`` if given. Raises ``ValueError`` for anything else (a FIFO or device,
    which could block or never end, a path leading outside, a file too large), ``OSError``
    when it cannot be read. Opened non-blocking, so a FIFO is refused instead of waited on."""
    path = Path(path)
    if inside is not None:
        root = Path(inside).resolve()
        if not path.resolve().is_relative_to(root):
            raise ValueError(f"{str(path)!r} lies outside {str(root)!r}")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{str(path)!r} is not a regular file")
        if info.st_size > limit:
            raise ValueError(f"{str(path)!r} holds {info.st_size} bytes, more than the "
                             f"{limit} read")
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(limit + 1)[:limit]
    finally:
        os.close(fd)
