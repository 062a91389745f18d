"""Dataset-scale runs on 40 real digits (digits CNN, IG with few steps): the Ray engine agrees
with the local one, a run killed with SIGKILL resumes to exactly the uninterrupted result, and
bad items are recorded as failed while the run goes on."""

import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from pathattr import cli
from pathattr.commands import UsageError
from pathattr.runs import run, summarize
from pathattr.store import Store

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


def test_ray_engine_matches_local(digits, reference, tmp_path):
    import ray  # a test dependency: this test must not be skipped
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
    try:
        result = run("digits-cnn", digits, out=tmp_path, engine="ray", workers=2, **SETTINGS)
        with pytest.raises(UsageError, match="--layer: unknown layer 'nope'"):  # as itself
            run("digits-cnn", digits, out=tmp_path / "bad", engine="ray", layer="nope",
                **SETTINGS)
    finally:
        ray.shutdown()
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
        while _done_count(out) < 2 * BATCH:
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    before = _done_count(out)
    assert 2 * BATCH <= before < 40, before

    monkeypatch.chdir(tmp_path)  # module:factory models are imported from the working directory
    result = run("slow:model", digits, out=out, **SETTINGS)
    assert (result.done, result.failed, result.skipped) == (40 - before, 0, before)  # none twice

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


def test_bad_items_are_recorded_and_the_run_goes_on(digits, tmp_path):
    x = np.load(digits)["x"]
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        Image.fromarray((x[i, 0] * 255).astype(np.uint8)).save(images / f"{i}.png")
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    arrays = tmp_path / "arrays.npz"
    np.savez(arrays, a=x[0], wrong=x[1, :, :6, :6], c=x[2])

    for data, bad, reason in [(images, "broken.png", "cannot read as an image"),
                              (arrays, "wrong", "model failed on input shape (1, 6, 6)")]:
        out = tmp_path / f"out-{data.name}"
        result = run("digits-cnn", data, out=out, **SETTINGS)
        assert (result.done, result.failed) == (3 if data == images else 2, 1)
        with Store(out) as s:
            failed = s.rows("status = 'failed'")
        assert [r["key"] for r in failed] == [bad]
        assert failed[0]["error"].startswith(reason), failed[0]["error"]
        again = run("digits-cnn", data, out=out, **SETTINGS)  # failures are retried, nothing else
        assert (again.done, again.failed) == (0, 1)


def test_summarize_tables_and_report(reference):
    summary = summarize(reference, sample=2, top=3)
    assert summary.data["methods"]["ig"]["done"] == 40
    assert sum(v["predicted"] for v in summary.data["classes"].values()) == 40
    assert sum(v["labelled"] for v in summary.data["classes"].values()) == 40
    assert len(summary.data["top_features"]) == 3
    page = summary.report.read_text()
    assert page.count("<img") == 1 + 2  # the dataset's mean map, then two sample items
    assert (reference / "summary.json").is_file()


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


def test_refuses_bad_layer_other_settings_and_explains_missing_ray(digits, reference, monkeypatch):
    with pytest.raises(UsageError, match="--layer: unknown layer 'nope'"):
        run("digits-cnn", digits, out=reference, layer="nope", **SETTINGS)
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
