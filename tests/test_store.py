"""The results store on its own: what a crash at each point leaves, and what the next writer
sees. (A real kill -9 of a run is in test_run.py.)"""

from pathlib import Path

import numpy as np
import pytest

import pathattr.store as store_module
from pathattr.store import BadStore, Outcome, Store, StoreBusy


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

        db = s.db

        def killed(sql, rows):
            if sql.startswith("INSERT OR REPLACE INTO items"):
                raise KeyboardInterrupt  # stands for a kill after the shard's rename
            return db.executemany(sql, rows)
        monkeypatch.setattr(s, "db", _Proxy(db, killed))
        with pytest.raises(KeyboardInterrupt):
            s.commit([outcome("b")])
        monkeypatch.undo()

        def half(path, write, tmp, durable):  # a kill in the middle of writing c's shard
            Path(tmp).write_bytes(b"PK\x03\x04 half")
            raise KeyboardInterrupt
        monkeypatch.setattr(store_module, "write_atomic", half)
        with pytest.raises(KeyboardInterrupt):
            s.commit([outcome("c")])
        monkeypatch.undo()
        monkeypatch.setattr(s, "_remove_leftovers", lambda: None)  # a kill runs no close()
    shards = tmp_path / "shards"
    assert len([p for p in shards.iterdir() if p.suffix == ".npz"]) == 2  # b's is an orphan
    assert len(list(shards.glob("*.tmp"))) == 1
    # the user's files, even those that look like shards, are not the store's to delete
    foreign = [shards / "notes.txt", shards / "ig-half.npz.tmp",
               shards / f"ig-{'0' * 32}.npz"]
    for p in foreign:
        p.write_bytes(b"mine")
    with Store(tmp_path, write=True) as s:  # the next writer cleans up what it recorded
        assert s.done() == {("a", "ig")}
        assert sorted(p.name for p in shards.iterdir()) == sorted(
            [s.rows()[0]["shard"], *(p.name for p in foreign)])
    assert all(p.read_bytes() == b"mine" for p in foreign)


def test_close_removes_shards_whose_rows_were_all_recomputed(tmp_path):
    with Store(tmp_path, write=True) as s:
        s.commit([outcome("a", value=1)])
        s.commit([outcome("a", value=2)])
        assert len(list((tmp_path / "shards").iterdir())) == 2
    assert [p.name for p in (tmp_path / "shards").iterdir()] == [Store(tmp_path).rows()[0]["shard"]]


def corrupt(tmp_path, damage):
    """Commit a, b (one shard) and c (another), apply ``damage(store_path, rows)``, and return
    what ``check`` says."""
    with Store(tmp_path, write=True) as s:
        s.commit([outcome("a", value=1), outcome("b", value=2)])
        s.commit([outcome("c", value=3)])
    with Store(tmp_path) as s:
        rows = {r["key"]: r for r in s.rows()}
    damage(tmp_path, rows)
    with Store(tmp_path) as s:
        verified, bad = s.check()
        readable = {r["key"] for r, _ in s.attributions(s.rows())}
    assert readable == {k for k, _ in verified}
    return verified, {k: reason for k, _, reason in bad}


def _sql(path, statement, *params):
    import sqlite3

    with sqlite3.connect(path / "index.sqlite") as db:
        db.execute(statement, params)


def test_verification_catches_truncation_swaps_edits_and_bad_values(tmp_path):
    def truncate(path, rows):
        shard = path / "shards" / rows["a"]["shard"]
        shard.write_bytes(shard.read_bytes()[:100])

    verified, bad = corrupt(tmp_path / "t", truncate)
    assert verified == {("c", "ig")} and set(bad) == {"a", "b"}
    assert "unreadable" in bad["a"]

    def swap_pointer(path, rows):  # a points at b's member: a real array, the wrong one
        _sql(path, "UPDATE items SET row = ? WHERE key = 'a'", rows["b"]["row"])

    verified, bad = corrupt(tmp_path / "p", swap_pointer)
    assert set(bad) == {"a"} and "checksum mismatch" in bad["a"]

    def swap_shards(path, rows):  # c's shard renamed as a/b's and the other way round
        first, second = (path / "shards" / rows[k]["shard"] for k in ("a", "c"))
        first.rename(path / "tmp")
        second.rename(first)
        (path / "tmp").rename(second)

    verified, bad = corrupt(tmp_path / "s", swap_shards)
    assert verified == set() and "checksum mismatch" in bad["a"]
    assert "has no member" in bad["b"]  # c's shard holds one member only

    def garbage(path, rows):
        _sql(path, "UPDATE items SET delta = 'garbage' WHERE key = 'b'")
        _sql(path, "UPDATE items SET row = '7' WHERE key = 'c'")

    verified, bad = corrupt(tmp_path / "g", garbage)
    assert verified == {("a", "ig")}
    assert bad["b"] == "index column delta holds 'garbage', not a number"
    assert bad["c"].endswith("has no member '7'")


def test_store_without_checksums_is_unverified(tmp_path):
    def drop(path, rows):
        _sql(path, "UPDATE items SET checksum = NULL")

    verified, bad = corrupt(tmp_path, drop)
    assert verified == set() and bad["a"] == "index column checksum is empty"


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


def test_a_folder_that_is_not_a_store_is_refused_and_left_as_it_was(tmp_path):
    (tmp_path / "thesis.tex").write_text("mine")
    (tmp_path / "shards").mkdir()
    (tmp_path / "shards" / "data.npz").write_bytes(b"mine")
    with pytest.raises(BadStore, match="not a pathattr results store"):
        Store(tmp_path, write=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shards", "thesis.tex"]
    assert (tmp_path / "shards" / "data.npz").read_bytes() == b"mine"


@pytest.mark.parametrize("link", ["shards", "index.sqlite"])
def test_symlinked_shards_or_index_are_never_followed(tmp_path, link):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.npz").write_bytes(b"mine")
    out = tmp_path / "out"
    with Store(out, write=True) as s:
        s.commit([outcome("a")])
    target = elsewhere if link == "shards" else elsewhere / "other.sqlite"
    if link == "index.sqlite":
        import sqlite3

        sqlite3.connect(target).close()
    moved = out / (link + ".real")
    (out / link).rename(moved)
    (out / link).symlink_to(target)
    for write in (True, False):
        with pytest.raises(BadStore, match="symbolic link"):
            Store(out, write=write)
    assert (elsewhere / "keep.npz").read_bytes() == b"mine"
    if link == "index.sqlite":
        import sqlite3

        with sqlite3.connect(target) as db:  # no tables, no WAL mode written into it
            assert db.execute("SELECT name FROM sqlite_master").fetchall() == []
            assert db.execute("PRAGMA journal_mode").fetchone()[0] != "wal"


def test_shard_names_in_the_index_cannot_point_outside_the_store(tmp_path):
    secret = tmp_path / "secret.npz"
    np.savez(secret, **{"0": np.ones((1, 2, 2), dtype=np.float32)})
    out = tmp_path / "out"
    with Store(out, write=True) as s:
        s.commit([outcome("a")])
    for name in ("../secret.npz", str(secret), f"../x-{'0' * 32}.npz"):
        _sql(out, "UPDATE items SET shard = ?", name)
        with Store(out) as s:
            (_, reason), = [(r, why) for r, _, why in s.results(s.rows())]
        assert reason == f"shard name {name!r} is not one pathattr writes"
    with Store(out, write=True):  # reopening to write deletes nothing outside
        pass
    assert secret.exists()


def test_a_shard_header_claiming_a_huge_shape_is_corrupt_not_fatal(tmp_path):
    import zipfile

    with Store(tmp_path, write=True) as s:
        s.commit([outcome("a")])
        shard = tmp_path / "shards" / s.rows()[0]["shard"]
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000,), }"
    member = b"\x93NUMPY\x01\x00" + len(header.ljust(118) + "\n").to_bytes(2, "little") + \
        (header.ljust(118) + "\n").encode()
    with zipfile.ZipFile(shard, "w") as z:
        z.writestr("0.npy", member)
    with Store(tmp_path) as s:
        verified, bad = s.check()
    assert verified == set() and bad[0][:2] == ("a", "ig") and "unreadable" in bad[0][2]


@pytest.mark.parametrize("content", ["garbage", "empty", "foreign"])
def test_an_index_that_is_not_ours_is_refused_and_never_written(tmp_path, content):
    import sqlite3

    index = tmp_path / "index.sqlite"
    if content == "garbage":
        index.write_bytes(b"not a database at all, just text")
    elif content == "empty":
        index.write_bytes(b"")
    else:
        with sqlite3.connect(index) as db:
            db.execute("CREATE TABLE accounts (name TEXT)")
    before = index.read_bytes()
    with pytest.raises(BadStore, match="is not a pathattr results index"):
        Store(tmp_path)
    if content != "empty":  # an empty file is what a writer killed before its schema leaves
        with pytest.raises(BadStore, match="is not a pathattr results index"):
            Store(tmp_path, write=True)
    assert index.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.sqlite"]


@pytest.mark.parametrize("column,value", [("delta", 0.5), ("target", 7), ("prediction", 1),
                                          ("label", 2), ("output_delta", -1.0),
                                          ("seconds", 9.0), ("key", "z")])
def test_a_hand_edit_of_any_field_a_report_reads_is_caught(tmp_path, column, value):
    def edit(path, rows):
        _sql(path, f"UPDATE items SET {column} = ? WHERE key = 'a'", value)

    verified, bad = corrupt(tmp_path, edit)
    assert verified == {("b", "ig"), ("c", "ig")}
    assert "checksum mismatch" in bad["z" if column == "key" else "a"]


def test_edited_settings_untrust_every_row(tmp_path):
    def edit(path, rows):
        _sql(path, "INSERT OR REPLACE INTO meta VALUES ('settings', '{\"data\": \"/\"}')")

    verified, bad = corrupt(tmp_path, edit)
    assert verified == set() and all("checksum mismatch" in r for r in bad.values())


def test_rows_deleted_by_hand_are_reported_as_missing(tmp_path):
    with Store(tmp_path, write=True) as s:
        s.commit([outcome("a"), outcome("b"), outcome("c", error="bad")])
        assert s.missing() == 0
    _sql(tmp_path, "DELETE FROM items WHERE key IN ('a', 'b')")
    with Store(tmp_path) as s:
        assert s.missing() == 2


def test_an_index_with_a_trigger_is_refused_before_it_can_run(tmp_path):
    with Store(tmp_path, write=True) as s:
        s.commit([outcome("a")])
    _sql(tmp_path, "CREATE TABLE log (x TEXT)")
    _sql(tmp_path, "DROP TABLE log")
    _sql(tmp_path, "CREATE TRIGGER spy AFTER INSERT ON items BEGIN "
                   "INSERT INTO meta VALUES ('spied', 'yes'); END")
    for write in (False, True):
        with pytest.raises(BadStore, match="trigger 'spy'"):
            Store(tmp_path, write=write)
    import sqlite3

    with sqlite3.connect(tmp_path / "index.sqlite") as db:
        assert db.execute("SELECT value FROM meta WHERE name = 'spied'").fetchone() is None


def test_a_compressed_shard_member_is_refused_unread(tmp_path):
    """A deflate bomb: 400 MB of zeros in 0.4 MB. The store writes members uncompressed, so a
    compressed one is refused from its zip header, before any byte is inflated."""
    import zipfile

    with Store(tmp_path, write=True) as s:
        s.commit([outcome("a")])
    with Store(tmp_path) as s:
        (row,) = s.rows()
    shard = tmp_path / "shards" / row["shard"]
    with zipfile.ZipFile(shard, "w", zipfile.ZIP_DEFLATED) as z, \
            z.open(f"{row['row']}.npy", "w", force_zip64=True) as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False,
                                                 "shape": (100, 1000, 1000)})
        zeros = bytes(1 << 20)
        for _ in range(400):
            f.write(zeros)
    assert shard.stat().st_size < 1e6

    def inflate(*args, **kwargs):
        raise AssertionError("a compressed member was inflated")

    with Store(tmp_path) as s, pytest.MonkeyPatch.context() as mp:
        mp.setattr(zipfile.ZipExtFile, "read", inflate)
        _, bad = s.check()
    assert "compressed: not written by pathattr" in bad[0][2]
