"""Every Python block of the guide (``docs/guide``) runs as pasted, each in a fresh namespace;
every link between the docs points at a file that exists; ``make bench`` rewrites one section
of ``docs/benchmarks.md`` and leaves the others; pyright checks every module."""

import json
import pathlib
import re

import pytest

from benchmarks.common import publish

ROOT = pathlib.Path(__file__).parents[1]
GUIDE = sorted((ROOT / "docs" / "guide").glob("*.md"))
BLOCKS = [(p.name, i, code) for p in GUIDE
          for i, code in enumerate(re.findall(r"```python\n(.*?)```", p.read_text(), re.S))]


def test_the_guide_has_runnable_examples():
    assert {name for name, _, _ in BLOCKS} >= {"images.md", "language-models.md"}


@pytest.mark.slow
@pytest.mark.parametrize("name, i, code", BLOCKS, ids=[f"{n}-{i}" for n, i, _ in BLOCKS])
def test_guide_block_runs(name, i, code, capsys):
    exec(compile(code, f"docs/guide/{name} block {i}", "exec"), {"__name__": "guide"})  # noqa: S102
    assert capsys.readouterr().out  # every block prints what it shows


@pytest.mark.parametrize("doc", [ROOT / "README.md", ROOT / "docs" / "captum.md",
                                 ROOT / "docs" / "benchmarks.md", *GUIDE])
def test_links_point_at_files(doc):
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
        if not target.startswith(("http://", "https://")):
            assert (doc.parent / target).exists(), (doc.name, target)


def test_no_text_speaks_of_work_sessions():
    texts = [ROOT / "README.md", *ROOT.glob("docs/**/*.md"), *ROOT.glob("src/**/*.py"),
             *ROOT.glob("benchmarks/*.py")]
    said = [p.name for p in texts if re.search(r"\bsession \d|\bsession's\b|this session",
                                                  p.read_text(), re.I)]
    assert not said
    assert not list(ROOT.glob("docs/**/*session*"))


def test_publish_replaces_its_section_only(tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n<!-- bench:ig -->\n## ig: IG\n\nold\n<!-- /bench:ig -->\n\n"
                   "<!-- bench:run -->\n## run: runs\n\nkept\n<!-- /bench:run -->\n")
    publish("ig", "| a | b |\n| 1 | 2 |\n", doc)
    text = doc.read_text()
    assert "old" not in text and "| 1 | 2 |" in text and "kept" in text
    assert re.search(r"## ig: IG\n\nMeasured \d{4}-\d\d-\d\d at commit \S+\.", text)
    publish("idg_coarse", "new table", doc)
    assert doc.read_text().rstrip().endswith("new table\n<!-- /bench:idg-coarse -->")
    assert [p.name for p in tmp_path.iterdir()] == ["benchmarks.md"]


def test_pyright_checks_every_module():
    config = json.loads((ROOT / "pyrightconfig.json").read_text())
    assert config["include"] == ["src/pathattr"] and not config.get("exclude")
    assert config["typeCheckingMode"] in ("basic", "standard", "strict")
