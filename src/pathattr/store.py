"""The results of ``pathattr run``: attribution shards plus an SQLite index, crash-safe.

Layout of ``RESULTS/``::

    index.sqlite      items(key, method, status, prediction, target, label, delta,
                      output_delta, seconds, error, shard, row, checksum), one row per
                      (key, method); meta(name, value): the run's settings
    shards/*.npz      one file per (batch, method): member ``str(row)`` is one item's attribution
    lock              held (flock) by the one process writing the store

A store deletes only files it can prove it wrote: a shard's name is recorded in the index
(table ``shards``) in its own transaction *before* the file is written, and only names so
recorded, of pathattr's own pattern (``METHOD-<32 hex>.npz``), are ever removed, with their
``.tmp``. Anything else in the folder is the user's and is left alone. Neither ``shards/`` nor
``index.sqlite`` may be a symbolic link, and an existing non-empty folder that is not a store is
refused. Shard names read from the index must be of that pattern too, so a row cannot point a
reader outside ``shards/``.

Why a crash at any moment loses nothing and never shows a half-written result: a shard is
written under a temporary name, fsynced, renamed into place (atomic on POSIX) and its directory
fsynced *before* the transaction that marks its items done commits (one transaction per batch,
SQLite WAL with ``synchronous=FULL``). A kill before the commit leaves at most an orphan shard,
which the next writer deletes, and the items still pending; a kill after it leaves them done.
An item counts as done only if its row says so and its result verifies: the row's values have
their column's type, the shard opens, and the member it points to hashes to the row's
``checksum``, a SHA-256 of the item's key, method, dtype, shape and bytes. So a truncated or
bit-flipped shard, two swapped shards or an edited row pointer make those items pending again
(``check``), and readers skip them with the reason. Failed items are retried by the next run.

Nothing read from a store is executed: shards are loaded with ``allow_pickle=False`` and the
index holds plain values.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import sqlite3
import uuid
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import first_line
from .files import make_dirs, open_folder, write_atomic

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    key TEXT NOT NULL, method TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('done', 'failed')),
    prediction INTEGER, target INTEGER, label INTEGER, delta REAL, output_delta REAL,
    seconds REAL, error TEXT, shard TEXT, row TEXT, checksum TEXT,
    PRIMARY KEY (key, method));
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS shards (name TEXT PRIMARY KEY);
"""
#: The only shard names a store writes, reads or deletes: no directory part, a random suffix.
SHARD_NAME = re.compile(r"[^/\\\x00]+-[0-9a-f]{32}\.npz")
#: Every schema object a store creates (tables and SQLite's indexes of their primary keys).
_OWN_SCHEMA = {("table", "items"), ("table", "meta"), ("table", "shards"),
               ("index", "sqlite_autoindex_items_1"), ("index", "sqlite_autoindex_meta_1"),
               ("index", "sqlite_autoindex_shards_1")}
#: What ``Store(write=True)`` may find in a folder it has not initialised yet (a writer killed
#: before its index existed).
_OWN_FILES = {"lock", "shards", "index.sqlite", "index.sqlite-wal", "index.sqlite-shm"}


@dataclass
class Outcome:
    """One item under one method: ``attribution`` when done, ``error`` (the reason) when
    failed. ``delta`` is the completeness gap, ``output_delta`` is ``F(x) - F(x')``; both None for
    methods without them (and for items that failed before the model ran)."""

    key: str
    method: str
    attribution: np.ndarray | None = None
    prediction: int | None = None
    target: int | None = None
    label: int | None = None
    delta: float | None = None
    output_delta: float | None = None
    seconds: float | None = None
    error: str | None = None


class BadStore(ValueError):
    """The store's index is not one pathattr wrote (settings that are not a JSON object)."""


class StoreBusy(Exception):
    """Another process holds the store's write lock."""


class Store:
    """An open results directory. ``Store(path, write=True)`` creates it, takes the write lock
    (raises ``StoreBusy``) and deletes what an interrupted writer left behind; read-only stores
    need no lock. Close with ``close()`` or a ``with`` block."""

    def __init__(self, path: str | Path, write: bool = False):
        self.path = Path(path)
        self.shards = self.path / "shards"
        self._lock = None
        for link in (self.shards, self.path / "index.sqlite"):
            if link.is_symlink():
                raise BadStore(f"{str(link)!r} is a symbolic link: a results store never "
                               f"follows one (it would write or delete where the link points)")
        for own in (self.path / "index.sqlite", self.path / "lock"):
            if own.exists() and not own.is_file():  # a FIFO would block its reader forever
                raise BadStore(f"{str(own)!r} is not a regular file, so not a store's")
        if write:
            if self.path.is_dir() and not (self.path / "index.sqlite").is_file():
                foreign = sorted(p.name for p in self.path.iterdir()
                                 if p.name not in _OWN_FILES)
                if foreign:
                    raise BadStore(f"{str(self.path)!r} is not empty and not a pathattr results "
                                   f"store (it holds {', '.join(foreign[:3])}"
                                   f"{', ...' if len(foreign) > 3 else ''}); choose a new or "
                                   f"empty folder")
            if (self.path / "index.sqlite").is_file():
                _check_index(self.path / "index.sqlite", empty_ok=True)
            make_dirs(self.shards)
            self._lock = _flock(self.path / "lock")
        elif not (self.path / "index.sqlite").is_file():
            raise FileNotFoundError(f"no results index in {str(self.path)!r}")
        else:
            _check_index(self.path / "index.sqlite", empty_ok=False)
        # isolation_level=None: transactions are explicit (BEGIN ... COMMIT), one per batch.
        self.db = sqlite3.connect(self.path / "index.sqlite", isolation_level=None)
        self.db.execute("PRAGMA trusted_schema = OFF")
        if write:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(SCHEMA)
            columns = {c[1] for c in self.db.execute("PRAGMA table_info(items)")}
            if "checksum" not in columns:  # a store from before checksums: all unverified
                self.db.execute("ALTER TABLE items ADD COLUMN checksum TEXT")
            # a store from before the shards table: what its rows name (of our pattern) is ours
            self.db.executemany("INSERT OR IGNORE INTO shards VALUES (?)", [
                (s,) for (s,) in self.db.execute("SELECT DISTINCT shard FROM items")
                if isinstance(s, str) and SHARD_NAME.fullmatch(s)])
            self._remove_leftovers()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._lock is not None:  # shards whose every row was recomputed into another
            self._remove_leftovers()
        self._release()

    def _release(self) -> None:
        """Close the index and release the write lock, touching nothing."""
        self.db.close()
        if self._lock is not None:
            os.close(self._lock)  # releases the flock
            self._lock = None

    def settings(self) -> dict | None:
        """The settings saved by the first run into this store, or None if there was none.
        Raises ``BadStore`` if they are not a JSON object."""
        text = self._settings_text()
        if text is None:
            return None
        try:
            settings = json.loads(text)
        except (TypeError, ValueError):
            settings = None
        if not isinstance(settings, dict):
            raise BadStore(f"the index of {str(self.path)!r} holds settings that are not a "
                             f"JSON object: {text[:80]!r}")
        return settings

    def _settings_text(self) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE name = 'settings'").fetchone()
        return None if row is None else str(row[0])

    def save_settings(self, settings: dict) -> None:
        with self._transaction():
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('settings', ?)",
                            (json.dumps(settings, sort_keys=True),))

    def missing(self) -> int:
        """How many done rows the store committed that its index no longer holds (deleted by
        hand or by another program): tampering, reported like a flipped bit."""
        row = self.db.execute("SELECT value FROM meta WHERE name = 'done'").fetchone()
        have = self.db.execute("SELECT COUNT(*) FROM items WHERE status = 'done'").fetchone()[0]
        value = None if row is None else row[0]
        try:
            committed = 0 if value is None else int(value)
        except (TypeError, ValueError):
            raise BadStore(f"the index of {str(self.path)!r} holds a count of committed rows "
                           f"that is not a number: {str(value)[:40]!r}") from None
        return max(committed - have, 0)

    def done(self) -> set[tuple[str, str]]:
        """``(key, method)`` of every done item whose result verifies (see ``check``)."""
        return self.check()[0]

    def check(self) -> tuple[set[tuple[str, str]], list[tuple[str, str, str]]]:
        """``(verified, corrupt)``: the ``(key, method)`` of every done item whose result
        verifies, and ``(key, method, reason)`` of those that do not. Cost: reading and hashing
        every stored attribution."""
        verified, corrupt = set(), []
        for row, _, reason in self.results(self.rows("status = 'done'")):
            if reason is None:
                verified.add((row["key"], row["method"]))
            else:
                corrupt.append((str(row["key"]), str(row["method"]), reason))
        return verified, corrupt

    def commit(self, outcomes: list[Outcome]) -> None:
        """Record one batch: shards first (durable under their final names), then one
        transaction for every row. Cost: one fsync per method of the batch plus the commit's."""
        rows = []
        by_method: dict[str, list[tuple[Outcome, np.ndarray]]] = {}
        for o in outcomes:
            if o.error is None and o.attribution is not None:
                by_method.setdefault(o.method, []).append((o, o.attribution))
            else:
                rows.append(_row(o, "failed", None, None))
        names = {method: f"{method}-{uuid.uuid4().hex}.npz" for method in by_method}
        settings = self._settings_text()
        with self._transaction():  # recorded first: what a kill leaves is provably ours
            self.db.executemany("INSERT INTO shards VALUES (?)", [(n,) for n in names.values()])
        for method, done in by_method.items():
            shard = names[method]
            arrays: dict[str, Any] = {str(i): a for i, (_, a) in enumerate(done)}
            # the temporary name is the shard's plus ".tmp", so a kill's leftover is provably
            # ours; durable: the rename must be on disk before the rows commit
            write_atomic(self.shards / shard, lambda f, a=arrays: np.savez(f, **a),
                         tmp=self.shards / (shard + ".tmp"), durable=True)
            for i, (o, a) in enumerate(done):
                fields = dict(zip(COLUMNS, _row(o, "done", shard, str(i))))
                rows.append(_row(o, "done", shard, str(i), checksum(fields, a, settings)))
        with self._transaction():
            self.db.executemany(f"INSERT OR REPLACE INTO items ({', '.join(COLUMNS)}) VALUES "
                                f"({', '.join('?' * len(COLUMNS))})", rows)
            # how many done rows the store committed: a row deleted by hand shows as missing
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('done', (SELECT COUNT(*) "
                            "FROM items WHERE status = 'done'))")

    def rows(self, where: str = "", params: Iterable = ()) -> list[sqlite3.Row]:
        """Index rows (``sqlite3.Row``, by column name), optionally filtered by an SQL
        ``where`` clause, ordered by method and key."""
        self.db.row_factory = sqlite3.Row
        try:
            return self.db.execute(f"SELECT * FROM items {'WHERE ' + where if where else ''} "
                                   "ORDER BY method, key", tuple(params)).fetchall()
        finally:
            self.db.row_factory = None

    def attributions(self, rows: Iterable[sqlite3.Row]) -> Iterator[tuple[sqlite3.Row, np.ndarray]]:
        """``(row, attribution)`` for the done ``rows`` whose result verifies; the others are
        skipped (``results`` says why)."""
        for row, attribution, _ in self.results(rows):
            if attribution is not None:
                yield row, attribution

    def results(self, rows: Iterable[sqlite3.Row]
                ) -> Iterator[tuple[sqlite3.Row, np.ndarray | None, str | None]]:
        """``(row, attribution, None)`` for each done row whose result verifies, else
        ``(row, None, reason)``; failed rows are skipped. Each shard is opened once per run of
        consecutive rows. Cost: reading and hashing those attributions."""
        settings = self._settings_text()  # every row's checksum covers them
        with ExitStack() as files:
            shard, npz, broken = None, None, None  # the open shard, or why it would not open
            for row in rows:
                if row["status"] != "done":
                    continue
                attribution, reason = None, _row_problem(row)
                if reason is None and row["shard"] != shard:
                    files.close()
                    shard, npz, broken = row["shard"], *self._open(files, row["shard"])
                if reason is None:
                    attribution, reason = (None, broken) if broken else \
                        _member(npz, row, settings)
                yield row, attribution, reason

    def _open(self, files: ExitStack, shard: str) -> tuple[object, str | None]:
        """``(npz, None)`` for a shard that opens, ``(None, reason)`` otherwise."""
        if not SHARD_NAME.fullmatch(shard):
            return None, f"shard name {shard!r} is not one pathattr writes"
        path = self.shards / shard
        if path.is_symlink() or (path.exists() and not path.is_file()):
            return None, f"shard {shard} is not a regular file"
        try:
            # Our own file handle: np.load leaves its file open when the archive is broken.
            f = files.enter_context(open(path, "rb"))  # noqa: SIM115
            return np.load(f, allow_pickle=False), None
        except FileNotFoundError:
            return None, f"shard {shard} is missing"
        except (OSError, ValueError, EOFError, MemoryError, zipfile.BadZipFile) as e:
            return None, f"shard {shard} is unreadable ({first_line(e) or type(e).__name__})"

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def _remove_leftovers(self) -> None:
        """Shards this store recorded (``shards`` table) that no row refers to, and their
        temporary files: what a writer killed between recording a shard and committing its
        rows leaves, and shards whose rows were all recomputed. Files the store did not record
        are never touched. Only the lock holder may do this."""
        used = {s for (s,) in self.db.execute("SELECT DISTINCT shard FROM items")}
        gone = [n for (n,) in self.db.execute("SELECT name FROM shards")
                if n not in used and SHARD_NAME.fullmatch(n)]
        for name in gone:
            for p in (self.shards / name, self.shards / (name + ".tmp")):
                if p.is_file() and not p.is_symlink():
                    p.unlink()
        with self._transaction():
            self.db.executemany("DELETE FROM shards WHERE name = ?", [(n,) for n in gone])


COLUMNS = ("key", "method", "status", "prediction", "target", "label", "delta", "output_delta",
           "seconds", "error", "shard", "row", "checksum")
_TYPES = {"prediction": int, "target": int, "label": int, "delta": (int, float),
          "output_delta": (int, float), "seconds": (int, float), "shard": str, "row": str,
          "checksum": str}
_REQUIRED = ("shard", "row", "checksum")


#: The columns a done row's checksum covers: every one a report reads.
SIGNED = ("key", "method", "status", "prediction", "target", "label", "delta", "output_delta",
          "seconds", "error", "shard", "row")


def checksum(fields: dict, attribution: np.ndarray, settings: str | None) -> str:
    """SHA-256 (hex) of a done row: its ``SIGNED`` fields (as stored), the run's settings
    (the index's text of them) and the attribution's dtype, shape and bytes. An edit of any
    of them, of the settings, or a row moved to another shard member no longer verifies."""
    h = hashlib.sha256(b"pathattr-row-v2\0")
    h.update(json.dumps([fields[c] for c in SIGNED]).encode() + b"\0")
    h.update((settings or "").encode() + b"\0")
    a = np.ascontiguousarray(attribution)
    h.update(a.dtype.str.encode() + b"\0" + repr(a.shape).encode() + b"\0")
    h.update(a.tobytes())
    return h.hexdigest()


def _member(npz, row: sqlite3.Row, settings: str | None
            ) -> tuple[np.ndarray | None, str | None]:
    """The row's attribution from its open shard and None, or None and why not. A member is
    read only if stored uncompressed, as the store writes it, so its size is bounded by the
    file's (a compressed member could expand without limit)."""
    where = f"shard {row['shard']} member {row['row']!r}"
    try:
        info = npz.zip.getinfo(f"{row['row']}.npy")
    except KeyError:
        return None, f"shard {row['shard']} has no member {row['row']!r}"
    if info.compress_type != zipfile.ZIP_STORED:
        return None, f"{where} is compressed: not written by pathattr"
    try:
        attribution = npz[row["row"]]
    except KeyError:
        return None, f"shard {row['shard']} has no member {row['row']!r}"
    except (OSError, ValueError, EOFError, MemoryError, zipfile.BadZipFile) as e:
        # a header claiming a huge shape raises MemoryError: corrupt like any other
        return None, f"{where} is unreadable ({first_line(e) or type(e).__name__})"
    if checksum({c: row[c] for c in SIGNED}, attribution, settings) != row["checksum"]:
        return None, f"checksum mismatch: {where} or this row is not what the run wrote " \
                     f"(swapped, edited or corrupted)"
    return attribution, None


def _row_problem(row: sqlite3.Row) -> str | None:
    """Why a done row cannot be trusted (a value of the wrong type, a missing pointer), or
    None. An index edited by hand or by another program is read, never believed."""
    names = row.keys()
    for column, kind in _TYPES.items():
        value = row[column] if column in names else None
        if value is None:
            if column in _REQUIRED:
                return f"index column {column} is empty" if column in names else \
                    f"index has no column {column} (written by an older pathattr)"
        elif isinstance(value, bool) or not isinstance(value, kind):
            wanted = getattr(kind, "__name__", "number")
            return f"index column {column} holds {value!r}, not a {wanted}"
    return None


def _row(o: Outcome, status: str, shard: str | None, row: str | None,
         digest: str | None = None) -> tuple:
    return (o.key, o.method, status, o.prediction, o.target, o.label, o.delta, o.output_delta,
            o.seconds, o.error, shard, row, digest)


def _check_index(path: Path, empty_ok: bool) -> None:
    """Raise ``BadStore`` unless ``path`` is a pathattr index (or, with ``empty_ok``, an SQLite
    file with no tables yet: a writer killed before its schema). Someone else's database, or a
    file that is no database, is never read as an index nor written to."""
    with path.open("rb") as f:
        header = f.read(16)
    if header and header != b"SQLite format 3\x00":
        raise BadStore(f"{str(path)!r} is not a pathattr results index (not an SQLite file)")
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        db.execute("PRAGMA trusted_schema = OFF")
        objects = db.execute("SELECT type, name FROM sqlite_master").fetchall()
    except sqlite3.DatabaseError as e:
        raise BadStore(f"{str(path)!r} is not a pathattr results index ({first_line(e)})") \
            from None
    finally:
        db.close()
    tables = {n for t, n in objects if t == "table"}
    foreign = [f"{t} {n!r}" for t, n in objects if (t, n) not in _OWN_SCHEMA]
    if foreign:  # a trigger would run on our writes, a view or table is someone else's
        raise BadStore(f"{str(path)!r} is not a pathattr results index: it holds schema "
                       f"objects pathattr did not create ({', '.join(foreign[:3])}), and is "
                       f"never written to or trusted")
    if (tables or not empty_ok) and not {"items", "meta"} <= tables:
        raise BadStore(f"{str(path)!r} is not a pathattr results index (its tables: "
                       f"{', '.join(sorted(tables)) or 'none'})")


def _flock(path: Path) -> int:
    import fcntl  # POSIX only, like the rename-over guarantee the store relies on

    with open_folder(path.parent, create=False) as folder:
        try:
            fd = os.open(path.name if folder is not None else path,
                         os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666, dir_fd=folder)
        except OSError as e:
            if e.errno != errno.ELOOP:
                raise
            raise BadStore(f"{str(path)!r} is a symbolic link: a results store never follows "
                           f"one (it would create a file where the link points)") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreBusy(f"another process is writing {str(path.parent)!r}") from None
    return fd
