"""The results of ``pathattr run``: attribution shards plus an SQLite index, crash-safe.

Layout of ``RESULTS/``::

    index.sqlite      items(key, method, status, prediction, target, label, delta,
                      output_delta, seconds, error, shard, row), one row per (key, method);
                      meta(name, value): the run's settings
    shards/*.npz      one file per (batch, method): member ``str(row)`` is one item's attribution
    lock              held (flock) by the one process writing the store

Why a crash at any moment loses nothing and never shows a half-written result: a shard is
written under a temporary name, fsynced, renamed into place (atomic on POSIX) and its directory
fsynced *before* the transaction that marks its items done commits (one transaction per batch,
SQLite WAL with ``synchronous=FULL``). A kill before the commit leaves at most an orphan shard,
which the next writer deletes, and the items still pending; a kill after it leaves them done.
An item counts as done only if its row says so and its shard exists, so deleting shards by hand
makes those items pending again. Failed items are retried by the next run.
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    key TEXT NOT NULL, method TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('done', 'failed')),
    prediction INTEGER, target INTEGER, label INTEGER, delta REAL, output_delta REAL,
    seconds REAL, error TEXT, shard TEXT, row TEXT,
    PRIMARY KEY (key, method));
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


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
        if write:
            self.shards.mkdir(parents=True, exist_ok=True)
            self._lock = _flock(self.path / "lock")
        elif not (self.path / "index.sqlite").is_file():
            raise FileNotFoundError(f"no results index in {str(self.path)!r}")
        # isolation_level=None: transactions are explicit (BEGIN ... COMMIT), one per batch.
        self.db = sqlite3.connect(self.path / "index.sqlite", isolation_level=None)
        if write:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(SCHEMA)
            self._remove_leftovers()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()
        if self._lock is not None:
            os.close(self._lock)  # releases the flock
            self._lock = None

    def settings(self) -> dict | None:
        """The settings saved by the first run into this store, or None if there was none."""
        row = self.db.execute("SELECT value FROM meta WHERE name = 'settings'").fetchone()
        return None if row is None else json.loads(row[0])

    def save_settings(self, settings: dict) -> None:
        with self._transaction():
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('settings', ?)",
                            (json.dumps(settings, sort_keys=True),))

    def done(self) -> set[tuple[str, str]]:
        """``(key, method)`` of every item done with its shard present. Cost: one query and one
        ``stat`` per shard."""
        rows = self.db.execute("SELECT key, method, shard FROM items WHERE status = 'done'")
        present: dict[str, bool] = {}
        out = set()
        for key, method, shard in rows:
            if shard not in present:
                present[shard] = (self.shards / shard).is_file()
            if present[shard]:
                out.add((key, method))
        return out

    def commit(self, outcomes: list[Outcome]) -> None:
        """Record one batch: shards first (durable under their final names), then one
        transaction for every row. Cost: one fsync per method of the batch plus the commit's."""
        rows = []
        by_method: dict[str, list[Outcome]] = {}
        for o in outcomes:
            if o.error is None:
                by_method.setdefault(o.method, []).append(o)
            else:
                rows.append(_row(o, "failed", None, None))
        for method, done in by_method.items():
            shard = f"{method}-{uuid.uuid4().hex}.npz"
            _write_atomic(self.shards / shard,
                          {str(i): o.attribution for i, o in enumerate(done)})
            rows.extend(_row(o, "done", shard, str(i)) for i, o in enumerate(done))
        with self._transaction():
            self.db.executemany("INSERT OR REPLACE INTO items VALUES "
                                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

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
        """``(row, attribution)`` for done ``rows`` whose shard exists, each shard opened once
        per run of consecutive rows. Cost: reading those attributions."""
        current, npz = None, None
        try:
            for row in rows:
                if row["status"] != "done" or not (self.shards / row["shard"]).is_file():
                    continue
                if row["shard"] != current:
                    if npz is not None:
                        npz.close()
                    current, npz = row["shard"], np.load(self.shards / row["shard"])
                yield row, npz[row["row"]]
        finally:
            if npz is not None:
                npz.close()

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
        """Temporary files and shards no row refers to: what a writer killed between writing a
        shard and committing its rows leaves. Only the lock holder may do this."""
        used = {s for (s,) in self.db.execute("SELECT DISTINCT shard FROM items")}
        for p in self.shards.iterdir():
            if p.name not in used:
                p.unlink()


def _row(o: Outcome, status: str, shard: str | None, row: str | None) -> tuple:
    return (o.key, o.method, status, o.prediction, o.target, o.label, o.delta, o.output_delta,
            o.seconds, o.error, shard, row)


def _write_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _flock(path: Path) -> int:
    import fcntl  # POSIX only, like the rename-over guarantee the store relies on

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreBusy(f"another process is writing {str(path.parent)!r}") from None
    return fd
