"""Outputs are written atomically and never through a link; names from inputs stay inside."""

import errno
import os
import sys
import textwrap

import pytest
from PIL import Image

from pathattr import cli
from pathattr.files import safe_name, write_file


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


def test_explain_keeps_hostile_input_names_inside_out(tmp_path, capsys, monkeypatch):
    (tmp_path / "tinynet.py").write_text(textwrap.dedent("""
        import torch
        def build():
            torch.manual_seed(0)
            return torch.nn.Sequential(torch.nn.Conv2d(3, 2, 8, stride=32), torch.nn.Flatten(),
                                       torch.nn.Linear(2 * 7 * 7, 4)).eval()
    """))
    monkeypatch.chdir(tmp_path)
    sys.modules.pop("tinynet", None)
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
