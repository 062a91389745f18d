"""Writing the user's folders safely: every output is written atomically and never through a
link, and names derived from inputs stay inside the folder.

``output_root(folder)`` holds a command's output folder open for the command's duration.
While it is held, every folder and file written under it (``make_dirs``, ``write_atomic`` and
what builds on them, the results store's index and lock) is reached from that open folder one
component at a time with ``O_NOFOLLOW``: a link anywhere below the folder is refused, never
written through, so nothing can appear outside it. Links in the folder's own path (what the
user named) are the user's choice and followed.

``write_atomic`` writes to a temporary file in the destination's folder (created exclusively,
with the user's umask, so a planted link is never followed), fsyncs it and renames it over the
destination: a reader sees the old file or the new one, a full disk or a kill leaves the old
one intact, and a destination that is a symbolic link is replaced by a regular file rather than
written through (its target is untouched). ``write_file`` and ``write_npz`` are its two common
uses; the results store writes its shards through it too.
"""

from __future__ import annotations

import contextvars
import errno
import os
import re
import secrets
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

#: Characters kept in a name derived from an input; others become ``_``.
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")

class _Root:
    """A command's output folder, created and opened on first use (an argument error before
    any write leaves nothing behind)."""

    def __init__(self, folder: Path):
        self.path, self._fd = folder, None

    def fd(self) -> int:
        if self._fd is None:
            self.path.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        return self._fd

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


#: The held output folder.
_ROOT: contextvars.ContextVar[_Root | None] = contextvars.ContextVar(
    "pathattr_output_root", default=None)


class LinkInOutput(OSError):
    """A path below the held output folder passes through a link (or a non-folder)."""


@contextmanager
def output_root(folder: str | Path) -> Iterator[Path]:
    """Hold ``folder`` (created and opened on the first write below it): until exit, writes
    below it are resolved from it without following links (module docstring). Writes
    elsewhere (a model cache) are unaffected. Yields its absolute path."""
    root = _Root(Path(os.path.abspath(folder)))
    token = _ROOT.set(root)
    try:
        yield root.path
    finally:
        _ROOT.reset(token)
        root.close()


def _below_root(path: Path) -> tuple[int, tuple[str, ...]] | None:
    """The held root's descriptor and ``path``'s components below it; None without a root or
    for a path outside it."""
    root = _ROOT.get()
    if root is None:
        return None
    absolute = Path(os.path.abspath(path))
    if not absolute.is_relative_to(root.path):
        return None
    return root.fd(), absolute.relative_to(root.path).parts


@contextmanager
def _folder_fd(parts: tuple[str, ...], root_fd: int, create: bool, shown: Path) -> Iterator[int]:
    """An open descriptor of the folder ``parts`` below ``root_fd``, each component opened
    with ``O_NOFOLLOW`` (and made first with ``create``)."""
    fds: list[int] = []
    current = root_fd
    try:
        for i, part in enumerate(parts):
            if create:
                with suppress(FileExistsError):
                    os.mkdir(part, 0o777, dir_fd=current)
            try:
                current = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW,
                                  dir_fd=current)
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENOTDIR):
                    where = Path(*parts[:i + 1])
                    raise LinkInOutput(
                        e.errno, f"{str(where)!r} in the output folder is a link or a file, "
                        f"and pathattr never writes through one: remove it or choose another "
                        f"folder", str(shown)) from None
                raise
            fds.append(current)
        yield current
    finally:
        for fd in fds:
            os.close(fd)


def make_dirs(path: str | Path) -> Path:
    """``path`` and its missing parents as folders (below a held root: never through a link);
    returns ``path``."""
    path = Path(path)
    below = _below_root(path)
    if below is None:
        path.mkdir(parents=True, exist_ok=True)
        return path
    with _folder_fd(below[1], below[0], True, path):
        return path


@contextmanager
def open_folder(path: str | Path, create: bool = True) -> Iterator[int | None]:
    """A descriptor of folder ``path`` reached without links below a held root, its missing
    folders made with ``create``, for ``dir_fd`` operations; None outside a held root (the
    caller then uses the path, and nothing is made)."""
    path = Path(path)
    below = _below_root(path)
    if below is None:
        yield None
        return
    with _folder_fd(below[1], below[0], create, path) as fd:
        yield fd


def write_atomic(path: str | Path, write: Callable[[BinaryIO], object],
                 tmp: str | Path | None = None, durable: bool = False) -> Path:
    """Call ``write(f)`` on a new temporary file beside ``path``, fsync it and rename it over
    ``path``; return ``path``. The file gets the user's umask; below a held output root its
    folder is reached without following links. ``tmp``: the temporary file's name in that
    folder (default: a fresh random one), for a caller that must find what a kill leaves.
    ``durable``: also fsync the folder, so the rename itself survives a crash. Cost: the
    write, one or two fsyncs and a rename."""
    path = Path(path)
    name = path.name
    temp = Path(tmp).name if tmp is not None else f".{name}.{secrets.token_hex(6)}.tmp"
    with open_folder(path.parent) as folder:
        def at(n: str) -> str | Path:
            return n if folder is not None else path.parent / n

        fd = os.open(at(temp), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666,
                     dir_fd=folder)
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(at(temp), at(name), src_dir_fd=folder, dst_dir_fd=folder)
        except BaseException:
            with suppress(FileNotFoundError):
                os.unlink(at(temp), dir_fd=folder)
            raise
        if durable:
            sync = os.open(".", os.O_RDONLY, dir_fd=folder) if folder is not None else \
                os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(sync)
            finally:
                os.close(sync)
    return path


def claim(folder: str | Path, what: str, owner: str, write: bool = True) -> None:
    """Make ``what`` in ``folder`` (an image's results, ``evaluation.*``) belong to ``owner``
    (the input's resolved path, a command): raise ``SettingError`` naming ``--out`` if
    another owner already wrote it, so two inputs or two commands never replace each other's
    outputs, while the same one replaces its own. The owner is kept in a small hidden file
    (``.WHAT.pathattr-owner``); with ``write=False`` only check. Cost: one small read."""
    from .errors import SettingError

    marker = Path(folder) / f".{what}.pathattr-owner"
    try:
        held = read_regular(marker, limit=4096).decode("utf-8", "replace")
    except FileNotFoundError:
        held = None
    except (OSError, ValueError):
        held = "(unreadable)"
    if held is not None and held != owner:
        raise SettingError(f"{str(Path(folder) / what)!r} holds the results of {held}, not of "
                           f"{owner}: choose another --out, or remove it", param="out")
    if write and held is None:
        write_file(marker, owner)


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
