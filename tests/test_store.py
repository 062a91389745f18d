"""The results store on its own: what a crash at each point leaves, and what the next writer
sees. (A real kill -9 of a run is in test_run.py.)"""

import numpy as np
import pytest

from pathattr.store import Outcome, Store, StoreBusy


def outcome(key, method="ig", value=1.0, error=None):
    attr = None if error else np.full((1, 2, 2), value, dtype=np.float32)
    return Outcome(key, method, attr, prediction=3, target=3, delta=0.1, output_delta=2.0,
                   seconds=0.01, error=error)


def test_commit_then_read_back(tmp_path):
    with Store(tmp_path, write=True) as s:
        s.commit([outcome("a", value=1), outcome("b", value=2), outcome("c", error="bad")])
    with Store(tmp_path) as s:
        assert s.done() == {("a", "ig"), ("b", "ig")}
        got = {r["key"]: a for r, a in s.attributions(s.rows())}
        failed = s.rows("status = 'failed'")
    assert set(got) == {"a", "b"} and got["b"][0, 0, 0] == 2
    assert [(r["key"], r["error"]) for r in failed] == [("c", "bad")]


def test_done_needs_its_shard(tmp_path):
    with Store(tmp_path, write=True) as s:
        s.commit([outcome("a")])
        s.commit([outcome("b")])
    shard = Store(tmp_path).rows("key = 'a'")[0]["shard"]
    (tmp_path / "shards" / shard).unlink()
    with Store(tmp_path) as s:
        assert s.done() == {("b", "ig")}
        assert [r["key"] for r, _ in s.attributions(s.rows())] == ["b"]


def test_crash_between_shard_and_commit_leaves_items_pending(tmp_path, monkeypatch):
    with Store(tmp_path, write=True) as s:
        s.commit([outcome("a")])

        def killed(*args):
            raise KeyboardInterrupt  # stands for a kill after the shard's rename
        monkeypatch.setattr(s, "db", _Proxy(s.db, killed))
        with pytest.raises(KeyboardInterrupt):
            s.commit([outcome("b")])
        monkeypatch.undo()
    assert len(list((tmp_path / "shards").iterdir())) == 2  # b's shard is an orphan
    (tmp_path / "shards" / "ig-half.npz.tmp").write_bytes(b"PK\x03\x04 half")  # killed mid-write
    with Store(tmp_path, write=True) as s:  # the next writer cleans up
        assert s.done() == {("a", "ig")}
        assert [p.name for p in (tmp_path / "shards").iterdir()] == [s.rows()[0]["shard"]]


def test_failed_item_replaced_when_it_succeeds(tmp_path):
    with Store(tmp_path, write=True) as s:
        s.commit([outcome("a", error="unreadable")])
        s.commit([outcome("a", value=5)])
        rows = s.rows()
    assert [(r["key"], r["status"], r["error"]) for r in rows] == [("a", "done", None)]


def test_one_writer_at_a_time(tmp_path):
    with Store(tmp_path, write=True):
        with pytest.raises(StoreBusy):
            Store(tmp_path, write=True)
        Store(tmp_path).close()  # readers need no lock
    Store(tmp_path, write=True).close()  # released on close (and by the OS on kill -9)


def test_settings_round_trip_and_missing_store(tmp_path):
    with Store(tmp_path / "r", write=True) as s:
        assert s.settings() is None
        s.save_settings({"steps": 8, "model": "m"})
        assert s.settings() == {"steps": 8, "model": "m"}
    with pytest.raises(FileNotFoundError):
        Store(tmp_path / "nothing")


class _Proxy:
    """A connection whose ``executemany`` (the batch's rows) fails."""

    def __init__(self, db, executemany):
        self._db, self.executemany = db, executemany

    def __getattr__(self, name):
        return getattr(self._db, name)
