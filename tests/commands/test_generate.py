"""``pathattr explain --text ... --model DIR --generate N``: a causal LM and an encoder-decoder
saved by ``save_pretrained`` (random weights, a word-level tokenizer) load offline, and the
command's matrix equals ``SequenceAttribution`` run directly."""

import json

import pytest
import torch

import pathattr
from pathattr import cli
from pathattr.commands import UsageError
from pathattr.commands.generate import load_language_model

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

WORDS = ["[PAD]", "</s>", "[UNK]", "now", "is", "better", "than", "never", "although",
         "often", "right", "simple", "complex", "flat", "nested"]


def save(model, directory):
    tk = tokenizers.Tokenizer(tokenizers.models.WordLevel(
        {w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tk.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]",
                                               pad_token="[PAD]", eos_token="</s>")
    model.save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    torch.manual_seed(0)
    gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=len(WORDS), n_embd=16, n_layer=2, n_head=2, n_positions=32,
        pad_token_id=0, bos_token_id=1, eos_token_id=1))
    t5 = transformers.T5ForConditionalGeneration(transformers.T5Config(
        vocab_size=len(WORDS), d_model=16, d_kv=8, d_ff=24, num_layers=1,
        num_decoder_layers=1, num_heads=2, decoder_start_token_id=0, pad_token_id=0,
        eos_token_id=1))
    root = tmp_path_factory.mktemp("hf")
    return {"causal": save(gpt2, root / "gpt2"), "seq2seq": save(t5, root / "t5")}


@pytest.mark.parametrize("kind", ["causal", "seq2seq"])
@pytest.mark.parametrize("method", ["ig", "left_ig"])
def test_cli_explains_a_local_model_like_the_api(models, kind, method, tmp_path, capsys):
    directory = models[kind]
    code = cli.main(["explain", "--text", "now is better", "--model", str(directory),
                     "--generate", "3", "--method", method, "--steps", "16", "--quiet",
                     "--out", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    (folder,) = (tmp_path / "generation").iterdir()  # named after the prompt
    method = method.replace("_", "-")  # the command takes both spellings, writes the registry's
    data = json.loads((folder / method / "tokens.json").read_text())
    assert data["encoder_decoder"] == (kind == "seq2seq") and len(data["targets"]) == 3
    lm = load_language_model(str(directory))
    ids = torch.tensor([lm.prompt("now is better")])
    r = pathattr.SequenceAttribution(lm.model, method=method).attribute(
        ids, max_new_tokens=3, score="logprob", steps=16)
    assert data["target_ids"] == r.target_ids[0].tolist()
    torch.testing.assert_close(torch.tensor(data["scores"], dtype=torch.float64),
                               r.scores[0].double(),
                               rtol=1e-5, atol=1e-6)
    assert data["tokens"][:3] == ["now", "is", "better"]
    page = (folder / method / "report.html").read_text()
    assert (folder / method / "heatmap.png").read_bytes()[:4] == b"\x89PNG"
    assert page.count('class="target"') == 3 and directory.name in page
    # each target row lists sources it can see only: the prompt and the targets before it
    # (an encoder-decoder's also the decoder's start token)
    seen = [len(data["tokens"]) - 3 + t + (kind == "seq2seq") for t in range(3)]
    for row, n in zip(data["scores"], seen):
        assert all(v == 0 for v in row[n:])


def test_a_directory_without_a_model_is_refused(tmp_path):
    with pytest.raises(UsageError, match="not a language model pathattr can load"):
        load_language_model(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(UsageError, match="cannot load"):
        load_language_model(str(tmp_path))
