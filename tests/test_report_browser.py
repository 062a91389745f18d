"""The HTML report rendered by real headless Chromium: no console errors, content rendered,
screenshot not blank. Skipped only when Chromium is absent outside CI (under CI it must run)."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent / "viz"))
from test_viz_report import full_report  # noqa: E402

from pathattr import cli  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0"]

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists() and os.environ.get("CI") != "true",
    reason="chromium not installed (it is required under CI)")


def chromium(page: Path, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={tmp / 'profile'}", *args, page.as_uri()],
        capture_output=True, text=True, timeout=120, check=True)


def check_in_browser(page: Path, tmp: Path, headings: list[str]) -> None:
    shot = tmp / "shot.png"
    run = chromium(page, tmp, f"--screenshot={shot}", "--window-size=1200,900")
    # Console messages (errors, uncaught exceptions, failed loads) are logged as ...:CONSOLE...
    console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console
    dom = chromium(page, tmp, "--dump-dom").stdout
    for h in headings:
        assert f"<h2>{h}</h2>" in dom
    with Image.open(shot) as img:
        pixels = np.asarray(img.convert("RGB"), dtype=np.float64)
    assert pixels.shape == (900, 1200, 3)
    assert pixels.std() > 20            # not a blank page
    # Strongly coloured pixels only come from the embedded pictures, so they decoded.
    colourful = (pixels.max(2) - pixels.min(2)) > 80
    assert colourful.mean() > 0.002


def test_synthetic_report_in_chromium(tmp_path):
    page = full_report().write(tmp_path / "report.html")
    check_in_browser(page, tmp_path, ["Input and prediction", "Attributions", "Tokens"])


def test_the_hover_value_and_the_method_toggle_work_in_chromium(tmp_path):
    report = full_report()
    page = report.write(tmp_path / "report.html")
    run = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
         "--virtual-time-budget=3000", page.as_uri() + "#selftest"],
        capture_output=True, text=True, timeout=120, check=True)
    console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console
    (seen,) = re.findall(r'data-selftest="([^"]*)"', run.stdout)
    hover, hidden, targets = seen.split(";")
    assert targets == "targets shown:1"  # full_report has two target rows; one was clicked
    corner = float(report.methods[0].values[0, 0])  # the pointer is on the top-left cell
    assert hover.startswith("here: ") and \
        abs(float(hover.split(": ")[1]) - corner) <= 5e-3 * max(1.0, abs(corner)), hover
    assert hidden == "hidden:none"


def test_cli_report_in_chromium(tmp_path):
    out = tmp_path / "out"
    code = cli.main(["explain", "photo:coffee", "--model", "digits-cnn", "--method",
                     "ig,saliency", "--steps", "4", "--curves", "--curve-steps", "4", "--layer",
                     "features.relu2", "--top", "4", "--out", str(out), "--quiet"])
    assert code == 0
    check_in_browser(out / "coffee" / "report.html", tmp_path,
                     ["Input and prediction", "Attributions", "Insertion and deletion",
                      "Top neurons"])


def test_generation_report_in_chromium(tmp_path):
    out = tmp_path / "out"
    code = cli.main(["explain", "--text", "In the face of", "--generate", "4", "--method",
                     "deeplift", "--out", str(out), "--quiet"])
    assert code == 0
    (report,) = (out / "generation").glob("*/deeplift/report.html")
    check_in_browser(report, tmp_path, ["Attributions: deeplift, target x position", "Tokens"])
