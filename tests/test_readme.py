"""Every Python block of the README runs as pasted, each in a fresh namespace, and says what
it shows."""

import pathlib
import re

import pytest
import torch

README = pathlib.Path(__file__).parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def run(i: int) -> dict:
    ns: dict = {"__name__": f"readme_block_{i}"}
    exec(compile(BLOCKS[i], f"README.md block {i}", "exec"), ns)  # noqa: S102
    return ns


def test_the_readme_has_the_blocks_this_file_checks():
    assert len(BLOCKS) == 3


@pytest.mark.slow
def test_quick_start():
    ns = run(0)
    assert ns["x"].shape == (2, 3, 224, 224)
    r = ns["r"]  # the error-controlled IG call
    assert r.info["converged"].all()
    assert (r.delta.abs() <= 0.01 * r.info["output_delta"].abs()).all()


@pytest.mark.slow
def test_huggingface_block():
    ns = run(1)
    assert ns["r"].attributions.shape[0] == 2 and ns["r"].attributions.shape[2] == 384


@pytest.mark.slow
def test_language_model_block():
    ns = run(2)
    r, exact = ns["r"], ns["exact"]
    b, t, length = r.scores.shape
    assert (b, t) == (2, 8) and ns["auto"].info["converged"].all()
    assert exact.delta.abs().max() < 1e-4
    hidden = r.conductance["transformer.h.0.mlp.c_proj"]
    assert hidden.shape[:3] == (2, 8, length) and torch.isfinite(hidden).all()
