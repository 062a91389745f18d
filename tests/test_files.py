"""Outputs are written atomically and never through a link; names from inputs stay inside."""

import errno
import os
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from pathattr import cli
from pathattr.files import (
    LinkInOutput,
    make_dirs,
    output_root,
    safe_name,
    write_file,
    write_npz,
)
from pathattr.store import BadStore, Store


def test_write_replaces_a_link_and_leaves_its_target(tmp_path):
    target = tmp_path / "precious.txt"
    target.write_text("mine")
    link = tmp_path / "report.html"
    link.symlink_to(target)
    write_file(link, "<html>")
    assert not link.is_symlink() and link.read_text() == "<html>"
    assert target.read_text() == "mine"


def test_a_full_disk_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "summary.json"
    write_file(path, "old")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space"):
        write_file(path, "new" * 1000)
    monkeypatch.undo()
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]  # no temporary left


@pytest.mark.parametrize("label,expected", [
    ("..", "input"), ("...", "input"), (".hidden", "hidden"), ("a/b\\c", "a_b_c"),
    ("evaluation.html", "evaluation.html-2"), ("\x1b[31mred", "__31mred"), ("cat", "cat")])
def test_safe_names_stay_inside_and_do_not_collide(label, expected):
    used = {"evaluation.html"}
    assert safe_name(label, used) == expected
    assert expected in used and "/" not in expected and not expected.startswith(".")


def _tinynet(tmp_path, monkeypatch) -> None:
    """A module ``tinynet`` with ``build()``, importable from ``tmp_path`` (the cwd)."""
    (tmp_path / "tinynet.py").write_text(textwrap.dedent("""
        import torch
        def build():
            torch.manual_seed(0)
            return torch.nn.Sequential(torch.nn.Conv2d(3, 2, 8, stride=32), torch.nn.Flatten(),
                                       torch.nn.Linear(2 * 7 * 7, 4)).eval()
    """))
    monkeypatch.chdir(tmp_path)
    sys.modules.pop("tinynet", None)


def test_explain_keeps_hostile_input_names_inside_out(tmp_path, capsys, monkeypatch):
    _tinynet(tmp_path, monkeypatch)
    images = tmp_path / "in"
    images.mkdir()
    for name in ("...png", "evaluation.html.png"):
        Image.new("RGB", (32, 32), (90, 40, 10)).save(images / name, format="PNG")
    out = tmp_path / "out"
    code = cli.main(["explain", str(images / "...png"), str(images / "evaluation.html.png"),
                     "--model", "tinynet:build", "--method", "saliency", "--curves",
                     "--out", str(out), "--quiet"])
    capsys.readouterr()
    assert code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out", "tinynet.py"]
    written = sorted(p.name for p in out.iterdir())
    assert "evaluation.html" in written and (out / "evaluation.html").is_file()
    assert all((out / n / "report.html").is_file() for n in written
               if (out / n).is_dir())


def test_read_regular_refuses_fifos_devices_outside_paths_and_large_files(tmp_path):
    from pathattr.files import read_regular

    (tmp_path / "ok.png").write_bytes(b"abc")
    assert read_regular(tmp_path / "ok.png", inside=tmp_path) == b"abc"
    os.mkfifo(tmp_path / "pipe.png")  # nobody writes it: opening it blocking would hang
    with pytest.raises(ValueError, match="not a regular file"):
        read_regular(tmp_path / "pipe.png", inside=tmp_path)
    with pytest.raises(ValueError, match="not a regular file"):
        read_regular("/dev/zero")
    (tmp_path.parent / "private.png").write_bytes(b"secret")
    for outside in (tmp_path / ".." / "private.png", tmp_path.parent / "private.png"):
        with pytest.raises(ValueError, match="lies outside"):
            read_regular(outside, inside=tmp_path)
    with pytest.raises(ValueError, match="more than the 2 read"):
        read_regular(tmp_path / "ok.png", limit=2)


def test_dataset_keys_from_an_index_are_read_never_believed(tmp_path):
    from pathattr.datasets import Dataset

    data = tmp_path / "data"
    data.mkdir()
    Image.new("RGB", (4, 4)).save(data / "a.png")
    os.mkfifo(data / "pipe.png")
    (tmp_path / "private.png").write_bytes(b"secret")
    ds = Dataset(data)
    raws = ds.read(["a.png", "pipe.png", "../private.png", str(tmp_path / "private.png")])
    assert raws[0].error is None and raws[0].payload.startswith(b"\x89PNG")
    assert "not a regular file" in raws[1].error
    assert all("lies outside" in r.error and r.payload is None for r in raws[2:])
    root = Dataset("/")  # a data folder recorded as "/": reading keys walks nothing
    assert root.read(["does-not-exist.png"])[0].error and root._keys is None


def test_control_characters_in_names_are_escaped_in_everything_printed(tmp_path, capsys,
                                                                        monkeypatch):
    _tinynet(tmp_path, monkeypatch)
    name = "cat\x1b[2J\nreport: forged.html\r.png"
    Image.new("RGB", (32, 32), (90, 40, 10)).save(tmp_path / name, format="PNG")
    code = cli.main(["explain", str(tmp_path / name), "--model", "tinynet:build", "--method",
                     "saliency", "--out", str(tmp_path / "out")])
    out, err = capsys.readouterr()
    assert code == 0
    assert "\x1b" not in out + err and "\r" not in out
    assert not any(line.startswith("report: forged") for line in out.splitlines())
    assert "\\x1b[2J\\nreport: forged.html\\r" in out


def _snapshot(folder):
    """Every path below ``folder`` with its kind and content (links not followed)."""
    out = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            p = os.path.join(root, name)
            kind = "link" if os.path.islink(p) else "dir" if os.path.isdir(p) else \
                "file" if os.path.isfile(p) else "other"  # a FIFO planted through a link
            out[os.path.relpath(p, folder)] = (kind, Path(p).read_bytes()
                                               if kind == "file" else os.readlink(p)
                                               if kind == "link" else None)
    return out


def test_a_linked_subfolder_of_out_is_never_written_through(tmp_path):
    victim, out = tmp_path / "victim", tmp_path / "out"
    victim.mkdir()
    out.mkdir()
    (out / "chelsea").symlink_to(victim)
    with output_root(out), pytest.raises(LinkInOutput, match="'chelsea'.*link"):
        write_file(out / "chelsea" / "report.html", "x")
    with output_root(out), pytest.raises(LinkInOutput):
        make_dirs(out / "chelsea" / "neurons")
    assert list(victim.iterdir()) == []


def test_a_linked_store_lock_creates_nothing_where_it_points(tmp_path):
    out, elsewhere = tmp_path / "store", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "lock").symlink_to(elsewhere / "created")
    with pytest.raises(BadStore, match="lock.*symbolic link"):
        Store(out, write=True)
    assert list(elsewhere.iterdir()) == []


def test_outputs_get_the_users_umask(tmp_path):
    old = os.umask(0o027)
    try:
        with output_root(tmp_path):
            path = write_file(tmp_path / "a" / "report.html", "x")
        plain = write_file(tmp_path / "plain.json", "{}")
    finally:
        os.umask(old)
    assert (path.stat().st_mode & 0o777) == 0o640 == (plain.stat().st_mode & 0o777)


_PARTS = st.sampled_from(["a", "b", "c", "report.html", "x.npz"])


def _plant(out, outside, tree) -> dict:
    """Make ``tree`` (``(parts, kind)`` pairs) below ``out``: links to ``outside/d`` and
    ``outside/f``, to themselves and to a sibling, FIFOs, folders and foreign files; a part
    already taken (by a link, a file or a FIFO) is skipped. Returns the foreign files and
    contents."""
    foreign = {}
    for parts, kind in tree:
        p = out.joinpath(*parts)
        if os.path.lexists(p):  # taken (writing to a planted FIFO would block the test)
            continue
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            if kind == "outside-dir":
                p.symlink_to(outside / "d")
            elif kind == "outside-file":
                p.symlink_to(outside / "f")
            elif kind == "loop":
                p.symlink_to(p)
            elif kind == "sibling":
                p.symlink_to(out / "a")
            elif kind == "fifo":
                os.mkfifo(p)
            elif kind == "folder":
                p.mkdir()
            else:
                p.write_text("foreign")
                foreign[p] = "foreign"
        except OSError:
            continue  # a component is already a link or a file: the tree is what it is
    return foreign


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(links=st.lists(st.tuples(st.lists(_PARTS, min_size=1, max_size=3),
                                st.sampled_from(["outside-dir", "outside-file", "loop",
                                                 "sibling", "fifo", "file"])),
                      max_size=4),
       writes=st.lists(st.tuples(st.lists(_PARTS, min_size=1, max_size=4),
                                 st.sampled_from(["file", "npz", "dirs"])),
                       min_size=1, max_size=6))
def test_no_tree_below_out_makes_a_write_land_outside_it(tmp_path_factory, links, writes):
    """Generated trees below --out (links to outside folders and files, to each other and in
    loops, FIFOs, foreign files) and generated writes under the held root: the outside tree
    never changes, and every write lands on a regular file or folder below --out or raises."""
    base = tmp_path_factory.mktemp("tree")
    outside, out = base / "outside", base / "out"
    (outside / "d").mkdir(parents=True)
    (outside / "f").write_text("theirs")
    out.mkdir()
    _plant(out, outside, links)
    before = _snapshot(outside)
    with output_root(out):
        for parts, kind in writes:
            target = out.joinpath(*parts)
            try:
                if kind == "file":
                    write_file(target, "ours")
                elif kind == "npz":
                    write_npz(target, a=__import__("numpy").zeros(2))
                else:
                    make_dirs(target)
            except OSError:
                continue  # refused: a link, a file where a folder is needed, a FIFO's name
            # what was written is reachable from out without any link
            rel = target.relative_to(out)
            for i in range(1, len(rel.parts) + 1):
                assert not out.joinpath(*rel.parts[:i]).is_symlink()
    assert _snapshot(outside) == before


def test_explain_refuses_a_linked_folder_in_out_and_writes_nothing_there(tmp_path, capsys,
                                                                        monkeypatch):
    _tinynet(tmp_path, monkeypatch)
    image, victim, out = tmp_path / "cat.png", tmp_path / "victim", tmp_path / "out"
    Image.new("RGB", (32, 32), (90, 40, 10)).save(image, format="PNG")
    victim.mkdir()
    out.mkdir()
    (out / "cat").symlink_to(victim)
    code = cli.main(["explain", str(image), "--model", "tinynet:build", "--method",
                     "saliency", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("pathattr: error: --out: 'cat'") and err.count("\n") == 1
    assert list(victim.iterdir()) == []


def test_two_inputs_of_one_name_never_replace_each_others_outputs(tmp_path, capsys,
                                                                  monkeypatch):
    _tinynet(tmp_path, monkeypatch)
    out = tmp_path / "out"
    for folder, colour in (("d1", (90, 40, 10)), ("d2", (10, 40, 90))):
        (tmp_path / folder).mkdir()
        Image.new("RGB", (32, 32), colour).save(tmp_path / folder / "x.png", format="PNG")

    def explain(folder):
        return cli.main(["explain", str(tmp_path / folder / "x.png"), "--model",
                         "tinynet:build", "--method", "saliency", "--out", str(out), "--quiet"])

    assert explain("d1") == 0
    first = (out / "x" / "report.html").read_bytes()
    capsys.readouterr()
    assert explain("d2") == 2
    err = capsys.readouterr().err
    assert err.startswith("pathattr: error: --out:") and "d1" in err and err.count("\n") == 1
    assert (out / "x" / "report.html").read_bytes() == first
    assert explain("d1") == 0  # the same input replaces its own results


def test_explain_curves_and_evaluate_never_replace_each_others_evaluation(tmp_path, capsys,
                                                                         monkeypatch):
    _tinynet(tmp_path, monkeypatch)
    out = tmp_path / "out"
    images = []
    for i in range(2):
        images.append(str(tmp_path / f"{i}.png"))
        Image.new("RGB", (32, 32), (90, 40 * i, 10)).save(images[-1], format="PNG")
    common = [*images, "--model", "tinynet:build", "--method", "saliency", "--out", str(out),
              "--quiet", "--curve-steps", "4"]
    assert cli.main(["explain", *common, "--curves"]) == 0
    written = (out / "evaluation.json").read_bytes()
    capsys.readouterr()
    assert cli.main(["evaluate", *common]) == 2
    assert "evaluation" in capsys.readouterr().err
    assert (out / "evaluation.json").read_bytes() == written
    assert not (out / "0" / "evaluate").exists()  # refused before any work


_NAMES = st.sampled_from(["x", "report.html", "summary.json", "evaluation.json", "neurons",
                          "shards", "index.sqlite", "lock", "store", "a", ".x.pathattr-owner"])
#: What pathattr itself writes (a foreign file of such a name may be replaced, never written
#: through); any other foreign file must stay as it was.
_OURS = {"report.html", "summary.json", "evaluation.json", "evaluation.html",
         ".x.pathattr-owner", ".evaluation.pathattr-owner", "index.sqlite", "lock"}


@settings(max_examples=5, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree=st.lists(st.tuples(st.lists(_NAMES, min_size=1, max_size=3),
                               st.sampled_from(["outside-dir", "outside-file", "loop",
                                                "sibling", "fifo", "foreign", "folder"])),
                     max_size=5))
def test_no_tree_below_out_makes_any_command_write_outside_or_hang(tmp_path_factory, tree,
                                                                   monkeypatch):
    """explain, neurons, evaluate, run and summarize on one --out holding a generated tree:
    the outside tree never changes, foreign files keep their content, every call ends (an
    alarm bounds each) with 0, 1 or 2."""
    import signal

    base = tmp_path_factory.mktemp("cmd")
    _tinynet(base, monkeypatch)
    outside, out = base / "outside", base / "out"
    (outside / "d").mkdir(parents=True)
    (outside / "f").write_text("theirs")
    out.mkdir()
    foreign = _plant(out, outside, tree)
    for i in range(2):
        Image.new("RGB", (32, 32), (90, 40 * i, 10)).save(base / f"{'xy'[i]}.png", format="PNG")
    import numpy as np

    np.savez(base / "d.npz", x=np.zeros((2, 3, 224, 224), np.float32))
    model = ["--model", "tinynet:build", "--quiet"]
    calls = [["explain", base / "x.png", "--method", "saliency", "--out", out, *model],
             ["neurons", base / "x.png", "--layer", "0", "--out", out, *model],
             ["evaluate", base / "x.png", base / "y.png", "--method", "saliency",
              "--curve-steps", "4", "--out", out, *model],
             ["run", "--data", base / "d.npz", "--method", "saliency", "--out", out / "store",
              *model],
             ["summarize", out / "store", "--quiet"]]
    if (out / "store").is_symlink():  # run's --out itself: a link there is the path named
        (out / "store").unlink()
    before = _snapshot(outside)

    def too_long(*_):
        raise TimeoutError("a command did not return")

    old = signal.signal(signal.SIGALRM, too_long)
    try:
        for call in calls:
            signal.alarm(60)
            try:
                code = cli.main([str(a) for a in call])
            finally:
                signal.alarm(0)
            assert code in (0, 1, 2), call
    finally:
        signal.signal(signal.SIGALRM, old)
    assert _snapshot(outside) == before
    for p, text in foreign.items():
        if p.name not in _OURS and not p.is_symlink():
            assert p.read_text() == text, p
