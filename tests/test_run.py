"""Dataset-scale runs on 40 real digits (digits CNN, IG with few steps): the Ray engine agrees
with the local one, a run killed with SIGKILL resumes to exactly the uninterrupted result, and
bad items are recorded as failed while the run goes on."""

import os
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from pathattr import cli
from pathattr.commands import UsageError
from pathattr.runs import run, summarize
from pathattr.store import Outcome, Store

STEPS, BATCH = 8, 4
SETTINGS = {"methods": "ig", "steps": STEPS, "batch_size": BATCH, "quiet": True}


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    from pathattr.zoo import digits_data

    _, _, x, y = digits_data()
    path = tmp_path_factory.mktemp("data") / "digits.npz"
    np.savez(path, x=x[:40].numpy(), y=y[:40].numpy())
    return path


@pytest.fixture(scope="module")
def reference(digits, tmp_path_factory):
    """One uninterrupted local run: the results every other run must reproduce."""
    out = tmp_path_factory.mktemp("reference")
    result = run("digits-cnn", digits, out=out, **SETTINGS)
    assert (result.done, result.failed, result.skipped) == (40, 0, 0)
    return out


def contents(out):
    """``{(key, method): (prediction, target, delta, attribution)}`` of a store's done items."""
    with Store(out) as s:
        return {(r["key"], r["method"]): (r["prediction"], r["target"], r["delta"], a)
                for r, a in s.attributions(s.rows())}


@pytest.fixture()
def another_cluster(monkeypatch):
    """What ``ray.init()`` finds when another Ray cluster runs on the machine: RAY_ADDRESS
    (here a port nothing listens on, so nothing is ever reached)."""
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:9")


@pytest.mark.parametrize("cluster", [False, True])
def test_ray_engine_matches_local(digits, reference, tmp_path, request, cluster):
    import ray  # a test dependency: this test must not be skipped
    if cluster:
        request.getfixturevalue("another_cluster")
    # a private Ray of its own, whatever else runs here: its own instance and temp dir (short:
    # Ray's socket paths must stay under 107 characters)
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="warning",
             _temp_dir=temp)
    try:
        result = run("digits-cnn", digits, out=tmp_path, engine="ray", workers=2, **SETTINGS)
        with pytest.raises(UsageError, match="^layer: unknown layer 'nope'"):  # as itself
            run("digits-cnn", digits, out=tmp_path / "bad", engine="ray", layer="nope",
                **SETTINGS)
        # more workers than CPUs would wait forever: refused
        with pytest.raises(UsageError, match="^workers: the cluster has 2 CPU"):
            run("digits-cnn", digits, out=tmp_path / "many", engine="ray", workers=3,
                **SETTINGS)
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
    assert (result.done, result.failed) == (40, 0)
    want, got = contents(reference), contents(tmp_path)
    assert got.keys() == want.keys() and len(got) == 40
    for k, (pred, target, delta, attr) in want.items():
        assert got[k][:2] == (pred, target)
        # Ray actors run one thread, this process two: CPU reductions may round differently.
        np.testing.assert_allclose(got[k][2], delta, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(got[k][3], attr, rtol=1e-5, atol=1e-7)


SLOW_MODEL = """
import time
import torch
from pathattr.zoo import digits_cnn

class Slow(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = digits_cnn()

    def forward(self, x):
        time.sleep(0.05)  # long enough that a kill lands mid-run
        return self.net(x)

def model():
    return Slow().eval()
"""


def test_killed_run_resumes_to_the_uninterrupted_result(digits, reference, tmp_path,
                                                        monkeypatch):
    (tmp_path / "slow.py").write_text(SLOW_MODEL)
    out = tmp_path / "out"
    script = (f"from pathattr.runs import run; run('slow:model', {str(digits)!r}, "
              f"out={str(out)!r}, methods='ig', steps={STEPS}, batch_size={BATCH}, quiet=True)")
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while _done_count(out) < 4 * BATCH:
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    before = _done_count(out)
    assert 4 * BATCH <= before < 40, before
    # Damage four of the committed shards: truncate one, flip a byte of another, swap two.
    with sqlite3.connect(out / "index.sqlite") as db:
        keys_of = {}
        for key, shard in db.execute("SELECT key, shard FROM items ORDER BY key"):
            keys_of.setdefault(shard, set()).add(key)
    truncated, flipped, a, b = (out / "shards" / s for s in list(keys_of)[:4])
    truncated.write_bytes(truncated.read_bytes()[:300])
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0x10
    flipped.write_bytes(bytes(data))
    a.rename(out / "shards" / "tmp")
    b.rename(a)
    (out / "shards" / "tmp").rename(b)

    monkeypatch.chdir(tmp_path)  # module:factory models are imported from the working directory
    with pytest.warns(UserWarning, match="stored result.*failed verification"):
        result = run("slow:model", digits, out=out, **SETTINGS)
    recomputed = {k for k, _, _ in result.recomputed}
    # Every item of the truncated and swapped shards; of the flipped one, the member it hit.
    assert keys_of[truncated.name] | keys_of[a.name] | keys_of[b.name] <= recomputed
    assert 1 <= len(recomputed & keys_of[flipped.name]) <= BATCH
    reasons = " ".join(r for _, _, r in result.recomputed)
    assert "unreadable" in reasons and "checksum mismatch" in reasons, reasons
    # None twice; the damaged ones again, each with its whole batch.
    assert result.failed == 0 and result.done + result.skipped == 40
    assert result.done == 40 - before + BATCH * len({int(k) // BATCH for k in recomputed})

    with sqlite3.connect(out / "index.sqlite") as db:
        rows = db.execute("SELECT key, shard, row FROM items").fetchall()
    assert sorted(k for k, _, _ in rows) == sorted(str(i) for i in range(40))
    stored = []
    for shard in (out / "shards").iterdir():  # no orphan and no duplicate in the shards either
        with np.load(shard) as z:
            stored += [(shard.name, m) for m in z.files]
    assert sorted(stored) == sorted((s, r) for _, s, r in rows)
    want, got = contents(reference), contents(out)
    assert got.keys() == want.keys()
    for k, (pred, target, delta, attr) in want.items():
        assert got[k][:3] == (pred, target, delta)
        assert np.array_equal(got[k][3], attr), k


def _done_count(out) -> int:
    if not (out / "index.sqlite").exists():
        return 0
    try:
        with sqlite3.connect(f"file:{out / 'index.sqlite'}?mode=ro", uri=True) as db:
            return db.execute("SELECT COUNT(*) FROM items WHERE status = 'done'").fetchone()[0]
    except sqlite3.OperationalError:  # the table is being created
        return 0


def bomb_png() -> bytes:
    """A valid PNG header claiming 20000 x 20000 grey pixels (400 megapixels, over Pillow's
    decompression-bomb limit) with almost no data: opening it raises, nothing is allocated."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + \
            struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) +
            chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b""))


def test_bad_items_are_recorded_and_the_run_goes_on(digits, tmp_path):
    x = np.load(digits)["x"]
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        Image.fromarray((x[i, 0] * 255).astype(np.uint8)).save(images / f"{i}.png")
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (images / "bomb.png").write_bytes(bomb_png())
    arrays = tmp_path / "arrays.npz"
    np.savez(arrays, a=x[0], wrong=x[1, :, :6, :6], c=x[2])
    stacked = tmp_path / "stacked.npz"  # one NaN item in the middle of a batch of 4
    with_nan = x[:6].copy()
    with_nan[1, 0, 3, 3] = np.nan
    np.savez(stacked, x=with_nan)

    for data, bad in [(images, {"broken.png": "cannot read broken.png as an image: not a",
                                "bomb.png": "cannot read bomb.png as an image: "
                                            "DecompressionBombError"}),
                      (arrays, {"wrong": "model failed on input shape (1, 6, 6)"}),
                      (stacked, {"1": "array holds 1 NaN or inf values"})]:
        out = tmp_path / f"out-{data.name}"
        result = run("digits-cnn", data, out=out, **SETTINGS)
        n = {"images": 5, "arrays.npz": 3, "stacked.npz": 6}[data.name]
        assert (result.done, result.failed) == (n - len(bad), len(bad))
        with Store(out) as s:
            failed = {r["key"]: r["error"] for r in s.rows("status = 'failed'")}
        assert failed.keys() == bad.keys()
        for key, reason in bad.items():
            assert failed[key].startswith(reason), failed[key]
            assert "0x" not in failed[key]  # names the file, not a memory address
        again = run("digits-cnn", data, out=out, **SETTINGS)  # failures are retried, nothing else
        assert (again.done, again.failed) == (0, len(bad))


def test_a_method_failing_on_one_item_fails_that_item_only(digits, tmp_path, monkeypatch):
    from pathattr import registry

    real = registry.attribute

    def fragile(method, model, x, target, steps):
        if (x[:, 0, 0, 0] > 0.5).any():  # as a method raising on one odd item would
            raise RuntimeError("odd item")
        return real(method, model, x, target, steps)

    data = tmp_path / "few.npz"
    x = np.load(digits)["x"][:4].copy()
    x[:, 0, 0, 0] = [0, 0.9, 0, 0]
    np.savez(data, x=x)
    monkeypatch.setattr(registry, "attribute", fragile)
    result = run("digits-cnn", data, out=tmp_path / "out", **SETTINGS)
    assert (result.done, result.failed) == (3, 1)
    with Store(tmp_path / "out") as s:
        assert [(r["key"], r["error"]) for r in s.rows("status = 'failed'")] == \
            [("1", "ig failed: RuntimeError: odd item")]


def test_summarize_tables_and_report(reference):
    summary = summarize(reference, sample=2, top=3)
    assert summary.data["methods"]["ig"]["done"] == 40
    assert sum(v["predicted"] for v in summary.data["classes"].values()) == 40
    assert sum(v["labelled"] for v in summary.data["classes"].values()) == 40
    assert len(summary.data["top_features"]) == 3
    page = summary.report.read_text()
    assert page.count("<img") == 1 + 2  # the dataset's mean map, then two sample items
    assert (reference / "summary.json").is_file()
    assert ">None<" not in page and "each item&#x27;s predicted class" in page


def test_class_names_of_a_runs_model_without_loading_it():
    from pathattr.runs import class_names
    from pathattr.zoo import class_name

    assert class_names("efficientnet-lite0")(285) == class_name(285)
    assert class_names("mypkg:net")(3) == "" and class_names(None)(0) == ""


def test_layer_neurons_per_channel(digits, tmp_path):
    few = tmp_path / "few.npz"
    np.savez(few, x=np.load(digits)["x"][:4])
    out = tmp_path / "out"
    run("digits-cnn", few, out=out, layer="features.relu2", **SETTINGS)
    got = contents(out)
    assert len(got) == 8  # each item under ig and under the layer method
    attr = got[("0", "conductance@features.relu2")][3]
    assert attr.shape == (32,)  # one total per channel
    # Neuron IG over a layer separating input from output sums to F(x) - F(x'), like IG.
    assert abs(got[("0", "conductance@features.relu2")][2]) < 0.1 * abs(attr.sum())


def test_an_unreachable_ray_address_fails_in_seconds_before_any_store(digits, tmp_path):
    with pytest.raises(UsageError, match="^address: nothing answers at 127.0.0.1:9 within"):
        run("digits-cnn", digits, out=tmp_path / "out", engine="ray",
            address="ray://127.0.0.1:9", **SETTINGS)
    assert not (tmp_path / "out").exists()


def test_ray_says_in_one_line_what_to_do_when_a_cluster_runs_and_workers_size_a_new_one(
        digits, tmp_path, another_cluster):
    with pytest.raises(UsageError, match="^address, workers: a Ray cluster already runs here"
                       ".*address='auto'.*address='local'") as e:
        run("digits-cnn", digits, out=tmp_path, engine="ray", workers=2, **SETTINGS)
    assert "\n" not in str(e.value)


def test_refuses_bad_layer_other_settings_and_explains_missing_ray(digits, reference, monkeypatch):
    with pytest.raises(UsageError, match="^layer: unknown layer 'nope'") as e:
        run("digits-cnn", digits, out=reference, layer="nope", **SETTINGS)
    assert e.value.flag_message() == "--layer: unknown layer 'nope'"
    with pytest.raises(UsageError, match="^batch_size, workers, steps: must be positive") as e:
        run("digits-cnn", digits, out=reference, **{**SETTINGS, "workers": 0})
    assert e.value.flag_message().startswith("--batch-size, --workers, --steps: ")
    with pytest.raises(UsageError, match="steps 8 -> 16"):
        run("digits-cnn", digits, out=reference, **{**SETTINGS, "steps": 16})
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(UsageError, match=r"pip install 'pathattr\[ray\]'"):
        run("digits-cnn", digits, out=reference, engine="ray", **SETTINGS)


def test_cli_run_and_summarize(digits, tmp_path, capsys):
    args = ["--model", "digits-cnn", "--data", str(digits), "--steps", str(STEPS),
            "--batch-size", "20", "--out", str(tmp_path), "--quiet"]
    assert cli.main(["run", *args]) == 0
    assert cli.main(["summarize", str(tmp_path)]) == 0
    assert "mean |delta|" in capsys.readouterr().out
    assert cli.main(["run", *args, "--workers", "2"]) == 2
    assert cli.main(["summarize", str(tmp_path / "nothing")]) == 2
    assert "RESULTS: no results index" in capsys.readouterr().err


EVIL_MODEL = """
from pathlib import Path
Path(__file__).with_name("ran").write_text("code from a results folder ran")
def model():
    raise SystemExit("never")
"""


def test_summarize_never_runs_code_named_in_the_results_folder(reference, tmp_path,
                                                               monkeypatch):
    out = tmp_path / "copy"
    (tmp_path / "evil.py").write_text(EVIL_MODEL)
    monkeypatch.chdir(tmp_path)  # where module:factory would be imported from
    with Store(reference) as ref:  # a store whose own settings name code
        settings, done = ref.settings(), list(ref.attributions(ref.rows()))
    with Store(out, write=True) as s:
        s.save_settings({**settings, "model": "evil:model"})
        s.commit([Outcome(r["key"], r["method"], a, r["prediction"], r["target"], r["label"],
                          r["delta"], r["output_delta"], r["seconds"]) for r, a in done])
    summary = summarize(out, sample=1)
    assert not (tmp_path / "ran").exists()
    page = summary.report.read_text()
    assert "is not built in, and code named in a results folder is never run" in page
    assert page.count("<img") == 2  # still the mean map and the sample, as bare heatmaps
    summarize(out, sample=1, model="digits-cnn")  # the user's own --model draws them
    with Store(out, write=True) as s:  # settings edited afterwards: no row verifies
        s.save_settings({**settings, "model": "digits-cnn"})
    counts = summarize(out, sample=1).data["methods"]["ig"]
    assert counts["done"] == 0 and counts["corrupt"] == len(done)


def test_summarize_reports_bad_rows_and_refuses_a_foreign_index(reference, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(reference, out)
    with sqlite3.connect(out / "index.sqlite") as db:
        db.execute("UPDATE items SET delta = 'garbage' WHERE key = '3'")
        db.execute("UPDATE items SET row = 'missing' WHERE key = '5'")
    summary = summarize(out)
    assert summary.data["methods"]["ig"]["done"] == 38
    assert summary.data["methods"]["ig"]["corrupt"] == 2
    reasons = {c["key"]: c["reason"] for c in summary.data["corrupt"]}
    assert reasons["3"] == "index column delta holds 'garbage', not a number"
    assert "has no member 'missing'" in reasons["5"]
    with sqlite3.connect(out / "index.sqlite") as db:
        db.execute("UPDATE meta SET value = '[1, 2' WHERE name = 'settings'")
    assert cli.main(["summarize", str(out), "--quiet"]) == 2


def test_batch_size_is_part_of_a_run_and_out_must_be_a_directory(digits, reference, tmp_path,
                                                                   capsys):
    with pytest.raises(UsageError, match="batch_size 4 -> 8"):
        run("digits-cnn", digits, out=reference, **{**SETTINGS, "batch_size": 8})
    a_file = tmp_path / "file"
    a_file.write_text("")
    for out in (a_file, a_file / "below"):
        assert cli.main(["run", "--model", "digits-cnn", "--data", str(digits),
                         "--out", str(out), "--quiet"]) == 2
        assert "--out:" in capsys.readouterr().err


def test_summarize_never_writes_through_a_link(reference, tmp_path):
    outside = tmp_path / "precious.html"
    outside.write_text("mine")
    for name in ("report.html", "summary.json"):
        (reference / name).unlink(missing_ok=True)
        (reference / name).symlink_to(outside)
    summarize(reference, sample=1, top=1)
    assert outside.read_text() == "mine"
    assert all((reference / n).is_file() and not (reference / n).is_symlink()
               for n in ("report.html", "summary.json"))


def test_auto_batch_size_commits_often_and_a_resume_keeps_the_stores(digits, tmp_path):
    from pathattr.runs import auto_batch_size

    assert [auto_batch_size(n) for n in (0, 1, 16, 20, 21, 200, 320, 10_000)] == \
        [1, 1, 1, 1, 2, 10, 16, 16]
    few = tmp_path / "few.npz"
    np.savez(few, x=np.load(digits)["x"][:12])
    out = tmp_path / "out"
    result = run("digits-cnn", few, out=out, methods="saliency", steps=4, quiet=True)
    with Store(out) as s:
        assert s.settings()["batch_size"] == 1  # 12 items: 12 commits, not one
    assert result.done == 12
    np.savez(few, x=np.load(digits)["x"][:24])  # the data grew: auto would now say 2
    again = run("digits-cnn", few, out=out, methods="saliency", steps=4, quiet=True)
    assert (again.done, again.skipped) == (12, 12)  # resumed with the store's batch size


def test_rows_deleted_by_hand_are_reported_and_recomputed_bit_equal(digits, reference,
                                                                    tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(reference, out)
    with sqlite3.connect(out / "index.sqlite") as db:
        keys = [k for (k,) in db.execute("SELECT key FROM items ORDER BY key LIMIT 3")]
        db.execute("DELETE FROM items WHERE key IN (?, ?, ?)", keys)
    assert "3 result row(s) the store committed are missing" in summarize(out).report.read_text()
    with pytest.warns(UserWarning, match="3 result row.s. that .* are missing"):
        result = run("digits-cnn", digits, out=out, **SETTINGS)
    assert result.done >= 3
    want, got = contents(reference), contents(out)
    assert got.keys() == want.keys()
    for k, (pred, target, delta, attr) in want.items():  # the same batches: the same bits
        assert got[k][:3] == (pred, target, delta) and np.array_equal(got[k][3], attr), k


DTYPE_MODEL = """
import torch
def model(dtype="float16", classes=10):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, classes))
    return net.to(getattr(torch, dtype)).eval()
def half(): return model("float16")
def bf16(): return model("bfloat16")
def double(): return model("float64")
def none(): return model("float32", 0)
"""


def test_one_bad_item_fails_alone_and_every_model_dtype_runs(tmp_path, monkeypatch):
    """Each kind of bad item becomes that item's recorded failure, and the run goes on."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dtypes.py").write_text(DTYPE_MODEL)
    sys.modules.pop("dtypes", None)
    rng = np.random.default_rng(0)
    x = rng.random((4, 1, 8, 8), dtype=np.float32)
    np.savez(tmp_path / "labels.npz", x=x, y=np.array([1, 1e21, 2.5, 3]))
    np.savez(tmp_path / "complex.npz", a=x[0], b=x[1].astype(np.complex64), c=np.float32(1))
    images = tmp_path / "images"
    images.mkdir()
    for name in (b"ok.png", b"\xff\xfe.png"):  # the second is not UTF-8
        Image.fromarray((x[0, 0] * 255).astype(np.uint8)).save(
            os.path.join(os.fsencode(images), name).decode("utf-8", "surrogateescape"))
    opts = {"methods": "saliency", "quiet": True, "batch_size": 4}
    r = run("dtypes:model", tmp_path / "labels.npz", out=tmp_path / "o1", **opts)
    assert (r.done, r.failed) == (2, 2)
    with Store(tmp_path / "o1") as s:
        failed = {row["key"]: row["error"] for row in s.rows("status = 'failed'")}
    assert failed == {"1": "cannot read 1: ItemError: label y[1] = 1e+21 is not a class index",
                      "2": "cannot read 2: ItemError: label y[2] = 2.5 is not a class index"}
    r = run("dtypes:double", tmp_path / "complex.npz", out=tmp_path / "o2", **opts)
    assert (r.done, r.failed) == (1, 2)
    with Store(tmp_path / "o2") as s:
        failed = {row["key"]: row["error"] for row in s.rows("status = 'failed'")}
    assert "complex" in failed["b"] and "one number" in failed["c"]
    for factory in ("bf16", "half"):
        assert run(f"dtypes:{factory}", tmp_path / "labels.npz", out=tmp_path / factory,
                   **opts).done == 2
    r = run("dtypes:none", tmp_path / "labels.npz", out=tmp_path / "o3", **opts)
    assert r.failed == 4  # a model without classes: each item says so, nothing crashes
    r = run("digits-cnn", images, out=tmp_path / "o4", **opts)
    assert r.done == 2
    with Store(tmp_path / "o4") as s:
        assert {row["key"] for row in s.rows()} == {"ok.png", "\\xff\\xfe.png"}


@pytest.mark.parametrize("case", ["zero-d", "huge header"])
def test_a_data_file_that_cannot_be_a_data_set_is_refused_before_any_work(case, tmp_path):
    path = tmp_path / "d.npz"
    if case == "zero-d":
        np.savez(path, x=np.float32(3))
    else:  # a header claiming 10^12 rows over 8 bytes of data
        import zipfile

        with zipfile.ZipFile(path, "w") as z, z.open("x.npy", "w") as f:
            np.lib.format.write_array_header_1_0(
                f, {"descr": "<f4", "fortran_order": False, "shape": (10**12, 8)})
            f.write(bytes(8))
    with pytest.raises(UsageError, match="^data: .*(one number|claims shape)"):
        run("digits-cnn", path, out=tmp_path / "out", methods="saliency", quiet=True)
    assert not (tmp_path / "out").exists()


class _FakeRay:
    """Enough of Ray for ``schedule``: tasks run when waited for; ``dies`` names the actor
    whose node is lost at its first task."""

    class exceptions:
        class RayActorError(Exception):
            pass

        class RayTaskError(Exception):
            cause = None

    def __init__(self, dies):
        self.dies = dies

    def wait(self, refs, num_returns=1):
        return refs[:num_returns], refs[num_returns:]

    def get(self, ref):
        actor, work = ref
        if actor == self.dies:
            raise self.exceptions.RayActorError(actor)
        return [(actor, work)]


class _FakeActor:
    def __init__(self, name):
        self.name = name
        self.compute = self

    def remote(self, work):
        return (self.name, work)


def test_a_lost_ray_workers_batches_go_to_the_others():
    from pathattr.runs.workers import schedule

    actors = [_FakeActor("a"), _FakeActor("b")]
    done = [o for out in schedule(_FakeRay(dies="a"), actors, iter(range(7))) for o in out]
    assert sorted(w for _, w in done) == list(range(7)) and {a for a, _ in done} == {"b"}
    with pytest.raises(RuntimeError, match="every Ray worker was lost"):
        list(schedule(_FakeRay(dies="a"), actors[:1], iter(range(3))))


WEIGHTED = """
import torch
def net():
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4)).eval()
"""


def test_evaluating_a_store_with_the_runs_model_needs_the_runs_weights(tmp_path, monkeypatch):
    import torch

    from pathattr.runs.evaluate import evaluate_results

    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(tmp_path)
    (tmp_path / "weighted.py").write_text(WEIGHTED)
    sys.modules.pop("weighted", None)
    import weighted

    torch.manual_seed(0)
    torch.save(weighted.net().state_dict(), tmp_path / "w.pt")
    np.savez(tmp_path / "d.npz", x=np.random.default_rng(0).random((3, 3, 8, 8), np.float32))
    run("weighted:net", tmp_path / "d.npz", out=tmp_path / "store", weights="w.pt",
        methods="saliency", quiet=True)
    # without the weights the same architecture is another model: refused, naming --weights
    with pytest.raises(UsageError, match="^weights: the run used weighted:net with weights"):
        evaluate_results(tmp_path / "store", metrics=("deletion",), curve_steps=4,
                         model="weighted:net", quiet=True)
    evaluate_results(tmp_path / "store", metrics=("deletion",), curve_steps=4,
                     model="weighted:net", weights="w.pt", quiet=True)
    assert (tmp_path / "store" / "evaluation.json").is_file()


def test_ray_workers_that_never_start_are_left_out_and_said(monkeypatch):
    from pathattr.runs import workers

    class Ray(_FakeRay):
        def wait(self, refs, num_returns=1, timeout=None):  # "b" is never placed
            done = [r for r in refs if r[0] != "b"]
            return done, [r for r in refs if r[0] == "b"]

        def get(self, ref):
            return True

    class Actor(_FakeActor):
        def __init__(self, name):
            super().__init__(name)
            self.ready = self

        def remote(self, *args):
            return (self.name, args)

    a, b = Actor("a"), Actor("b")
    with pytest.warns(UserWarning, match="1 of 2 Ray workers did not start"):
        assert workers._started(Ray(dies=None), [a, b]) == [a]
    with pytest.raises(UsageError, match="^workers: no Ray worker started"):
        workers._started(Ray(dies=None), [b])
