"""A hypothesis fuzz over results folders: random keys and shard names (absolute, ``..``,
FIFOs, devices, links), read by the store and the dataset. No file outside the folders is
opened, nothing outside is written, and no call takes more than a few seconds."""

import builtins
import os
import sqlite3

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from test_fuzz import time_box

from pathattr.datasets import Dataset
from pathattr.store import Outcome, Store

HEX = "0" * 32
NAMES = st.one_of(
    st.sampled_from(["../outside.png", "/dev/zero", "pipe.png", "link.png", "a.png",
                     "{root}/outside.png", "sub/../../outside.png", "", ".", "..",
                     f"ig-{HEX}.npz", f"../ig-{HEX}.npz", f"pipe-{HEX}.npz",
                     f"link-{HEX}.npz", "{root}/outside.npz"]),
    st.text(min_size=0, max_size=12))


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(keys=st.lists(NAMES, min_size=1, max_size=4), shards=st.lists(NAMES, min_size=1,
                                                                        max_size=3))
def test_fuzzed_results_folders_stay_inside(tmp_path_factory, monkeypatch, keys, shards):
    root = tmp_path_factory.mktemp("fuzz")
    out, data = root / "out", root / "data"
    data.mkdir()
    Image.new("RGB", (4, 4)).save(data / "a.png")
    outside = root / "outside.png"
    outside.write_bytes(b"private")
    np.savez(root / "outside.npz", **{"0": np.ones((1, 2, 2), np.float32)})
    os.mkfifo(data / "pipe.png")
    (data / "link.png").symlink_to(outside)
    with Store(out, write=True) as s:
        s.commit([Outcome("a.png", "ig", np.ones((1, 2, 2), np.float32), 1, 1, None, 0.0, 1.0,
                          0.1)])
    os.mkfifo(out / "shards" / f"pipe-{HEX}.npz")
    (out / "shards" / f"link-{HEX}.npz").symlink_to(root / "outside.npz")
    with sqlite3.connect(out / "index.sqlite") as db:
        for n, (key, shard) in enumerate(zip(keys * 3, shards * 3)):
            db.execute("INSERT OR REPLACE INTO items (key, method, status, shard, row, checksum)"
                       " VALUES (?, ?, 'done', ?, '0', 'x')",
                       (key.replace("{root}", str(root)), f"m{n}",
                        shard.replace("{root}", str(root))))
    opened = []
    real_open, real_os_open = builtins.open, os.open

    def spy_open(file, *a, **k):
        opened.append(os.fspath(file) if not isinstance(file, int) else None)
        return real_open(file, *a, **k)

    def spy_os_open(path, *a, **k):
        opened.append(os.fspath(path))
        return real_os_open(path, *a, **k)
    monkeypatch.setattr(builtins, "open", spy_open)
    monkeypatch.setattr(os, "open", spy_os_open)
    try:
        with time_box(5):
            with Store(out) as s:
                s.check()
            Dataset(data).read([k.replace("{root}", str(root)) for k in keys])
            with Store(out, write=True):  # a writer's cleanup deletes nothing outside
                pass
    finally:
        monkeypatch.undo()
    for p in filter(None, opened):
        resolved = os.path.realpath(p)
        assert resolved.startswith((str(out.resolve()), str(data.resolve()))), p
    assert outside.read_bytes() == b"private" and (root / "outside.npz").exists()
    assert (data / "a.png").exists()
