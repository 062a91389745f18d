"""The tiny language model: trained once, cached, continues the Zen of Python, and the CLI
explains its continuations."""

import json

import pytest
import torch

from pathattr import cli
from pathattr.zoo import tinylm


@pytest.fixture(scope="module")
def lm():
    return tinylm.tiny_lm()


def test_trained_cached_and_continues_its_text(lm):
    tokenizer, model = lm
    assert tinylm.weights_path().is_file()  # the second load reads the cache
    ids = torch.tensor([tokenizer("In the face of")])
    out = model.generate(ids, max_new_tokens=10, do_sample=False, pad_token_id=0)
    assert tokenizer.decode(out[0, ids.shape[1]:].tolist()) == " ambiguity"
    with pytest.raises(ValueError, match="never saw: '@'"):
        tokenizer("user@example")


def test_cli_explains_a_generated_and_a_forced_continuation(lm, tmp_path, capsys):
    code = cli.main(["explain", "--text", "In the face of", "--generate", "6", "--method",
                     "deeplift", "--out", str(tmp_path / "gen")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "' ambig'" in out and "<-" in out  # the continuation, then sources per target
    (gen,) = (tmp_path / "gen" / "generation").glob("*/deeplift")
    data = json.loads((gen / "tokens.json").read_text())
    assert len(data["targets"]) == 6 and max(data["relative_delta"]) < 1e-5
    page = (gen / "report.html").read_text()
    assert page.count('class="target"') == 6 and "<img" in page
    code = cli.main(["explain", "--text", "Errors should", "--target-text", " never",
                     "--steps", "64", "--out", str(tmp_path / "forced"), "--quiet"])
    assert code == 0
    (forced,) = (tmp_path / "forced" / "generation").glob("*/ig/tokens.json")
    data = json.loads(forced.read_text())
    assert data["continuation"] == " never" and max(data["relative_delta"]) < 1e-3


def test_several_methods_and_prompts_keep_every_report(lm, tmp_path, capsys):
    out = tmp_path / "out"
    for prompt in ("In the face of", "Now is"):
        code = cli.main(["explain", "--text", prompt, "--generate", "3", "--method",
                         "deeplift,left-ig,idgi", "--steps", "8", "--out", str(out), "--quiet"])
        assert code == 0, capsys.readouterr().err
    folders = sorted((out / "generation").iterdir())
    assert len(folders) == 2  # the second prompt did not replace the first
    for folder in folders:
        runs = {p.parent.name: json.loads(p.read_text()) for p in folder.glob("*/tokens.json")}
        assert set(runs) == {"deeplift", "left-ig", "idgi"}
        # one continuation, generated once, explained by each method
        assert len({tuple(r["target_ids"]) for r in runs.values()}) == 1
        assert max(runs["idgi"]["relative_delta"]) < 1e-5
    code = cli.main(["explain", "--text", "Now is", "--generate", "3", "--method", "nope",
                     "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "--method: unknown method 'nope' with --generate" in err


@pytest.mark.parametrize("args, message", [
    (["--text", "hi", "--generate", "2", "--target-text", "x"], "give one"),
    (["--generate", "2"], "only with --text"),
    (["--text", "hi", "--generate", "2", "--pair", "x"], "--pair: not used"),
    (["--text", "hi@", "--generate", "2"], "never saw: '@'"),
    (["--text", "hi", "--generate", "2", "--model", "digits-cnn"], "not a language model"),
    (["--text", "hi", "--generate", "2", "--method", "guided_ig"],
     "--method: unknown method 'guided-ig' with --generate"),
])
def test_cli_refuses_bad_generation_arguments(lm, args, message, capsys):
    assert cli.main(["explain", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
