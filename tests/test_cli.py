"""The ``pathattr`` command end to end: in-process through ``cli.main`` (returns the exit code),
plus one run of the installed entry point. Few steps keep it quick; numbers are not checked
here, only that every artefact is produced and every error is one line with the right code."""

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pathattr import cli
from pathattr.registry import available

DIGITS = ["--model", "digits-cnn", "--steps", "4", "--quiet"]


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def chelsea(tmp_path_factory):
    """One EfficientNet-Lite0 run (the expensive fixture; curves and neurons, which cost as
    much again, are tested on the digits CNN)."""
    out = tmp_path_factory.mktemp("chelsea")
    code = cli.main(["explain", "photo:chelsea", "--method", "ig,deeplift", "--steps", "4",
                     "--out", str(out), "--quiet"])
    return code, out / "chelsea"


@pytest.mark.slow
def test_explain_photo_writes_every_artefact(chelsea):
    code, d = chelsea
    assert code == 0
    for name in ("ig.png", "deeplift.png", "grid.png",
                 "attributions.npz", "summary.json", "report.html"):
        assert (d / name).stat().st_size > 0, name
    with Image.open(d / "ig.png") as img:
        assert img.size == (224, 224)
    s = json.loads((d / "summary.json").read_text())
    assert s["model"] == "efficientnet-lite0" and s["steps"] == 4
    assert s["target"]["class"] == s["prediction"]["class"]      # default: the prediction
    assert set(s["methods"]) == {"ig", "deeplift"}
    for m in s["methods"].values():
        assert m["error"] is None and m["seconds"] > 0 and isinstance(m["delta"], float)
    assert abs(s["methods"]["deeplift"]["relative_delta"]) < 1e-3  # summation-to-delta
    npz = np.load(d / "attributions.npz")
    assert set(npz.files) == {"input", "ig", "deeplift"} and npz["ig"].shape == (3, 224, 224)
    page = (d / "report.html").read_text()
    assert "Attributions" in page and "deeplift" in page and "Top neurons" not in page


def test_all_methods_on_several_photos(tmp_path, capsys):
    code, out, err = run(capsys, "explain", "photo:camera", "photo:coffee", "--method", "all",
                         "--out", tmp_path, *DIGITS)
    # --quiet (in DIGITS): no tables, only where each report is
    assert code == 0 and out.splitlines() == [
        f"report: {tmp_path / label / 'report.html'}" for label in ("camera", "coffee")], err
    for label in ("camera", "coffee"):
        s = json.loads((tmp_path / label / "summary.json").read_text())
        assert list(s["methods"]) == available()
        assert all(m["error"] is None for m in s["methods"].values()), s["methods"]


def test_same_name_twice_gets_two_directories(tmp_path, capsys):
    code, _, _ = run(capsys, "explain", "photo:camera", "photo:camera", "--method", "saliency",
                     "--out", tmp_path, *DIGITS)
    assert code == 0 and (tmp_path / "camera-2" / "report.html").exists()


def test_explicit_target_by_index(tmp_path, capsys):
    code, _, _ = run(capsys, "explain", "photo:camera", "--method", "ig", "--target", "3",
                     "--out", tmp_path, *DIGITS)
    assert code == 0
    assert json.loads((tmp_path / "camera" / "summary.json").read_text())["target"]["class"] == 3


def test_evaluate_prints_the_auc_table(tmp_path, capsys):
    code, out, _ = run(capsys, "evaluate", "photo:coffee", "--model", "digits-cnn", "--method",
                       "ig,saliency", "--steps", "4", "--curve-steps", "4", "--metrics",
                       "insertion,deletion", "--out", tmp_path)
    assert code == 0
    assert "insertion AUC" in out and "deletion AUC" in out and "saliency" in out
    s = json.loads((tmp_path / "coffee" / "evaluate" / "summary.json").read_text())
    assert set(s["curves"]["ig"]) == {"insertion_auc", "deletion_auc"}
    assert set(s["curves"]) == {"ig", "ig (inverse)", "saliency", "saliency (inverse)",
                                "random ranking"}
    assert (tmp_path / "coffee" / "evaluate" / "curves.png").exists()


def test_evaluate_over_images_a_data_set_and_a_store(tmp_path, capsys):
    code, out, _ = run(capsys, "evaluate", "photo:coffee", "photo:rocket", "photo:camera",
                       "--model", "digits-cnn", "--method", "ig,saliency", "--steps", "4",
                       "--curve-steps", "4", "--metrics", "deletion,road_morf",
                       "--out", tmp_path / "photos")
    assert code == 0 and "== 3 images" in out and "Wilcoxon p" in out
    doc = json.loads((tmp_path / "photos" / "evaluation.json").read_text())
    assert doc["inputs"] == ["coffee", "rocket", "camera"]
    assert set(doc["auc"]["ig"]) == {"deletion", "road_morf"}
    assert (tmp_path / "photos" / "evaluation.html").exists()
    from pathattr.zoo import digits_data

    _, _, x, _ = digits_data()
    data = tmp_path / "digits.npz"
    np.savez(data, x=x[:6].numpy())
    store = tmp_path / "store"
    code, out, _ = run(capsys, "evaluate", "--data", str(data), "--model", "digits-cnn",
                       "--method", "ig,saliency", "--steps", "4", "--curve-steps", "8",
                       "--metrics", "insertion,deletion", "--out", store, "--quiet")
    assert code == 0
    doc = json.loads((store / "evaluation.json").read_text())
    assert len(doc["inputs"]) == 6 and doc["methods"] == ["ig", "saliency"]
    assert all(0 <= v < 1 for v in doc["completeness"]["ig"])  # from the store's deltas
    assert doc["completeness"]["saliency"] == [None] * 6
    code, out, _ = run(capsys, "evaluate", "--results", str(store), "--metrics", "deletion",
                       "--curve-steps", "8")
    assert code == 0 and "== 6 items" in out
    again = json.loads((store / "evaluation.json").read_text())
    assert again["auc"]["ig"]["deletion"] == doc["auc"]["ig"]["deletion"]  # same numbers
    code, _, err = run(capsys, "evaluate", "photo:coffee", "--results", str(store))
    assert code == 2 and "exactly one" in err
    bad = x[:3].numpy().copy()
    bad[1] = np.nan  # one item fails: the exit code says so and the warning names it
    np.savez(tmp_path / "bad.npz", x=bad)
    code, _, err = run(capsys, "evaluate", "--data", str(tmp_path / "bad.npz"), "--model",
                       "digits-cnn", "--method", "saliency", "--curve-steps", "4", "--metrics",
                       "deletion", "--out", tmp_path / "bad", "--quiet")
    assert code == 1 and "1 item(s) failed: 1 (saliency): " in err and "NaN" in err, err


def test_neurons_prints_the_top_channels(tmp_path, capsys):
    code, out, _ = run(capsys, "neurons", "photo:coffee", "--model", "digits-cnn", "--layer",
                       "features.relu2", "--top", "3", "--steps", "4", "--out", tmp_path)
    assert code == 0
    assert "Neuron IG" in out and "DeepLIFT" in out and "reset effect" in out
    s = json.loads((tmp_path / "coffee" / "neurons" / "summary.json").read_text())
    t = s["target"]  # which class was explained, said on the terminal too
    assert f"== coffee: class {t['class']} '{t['name']}' (predicted, probability " in out
    assert "methods" not in s and len(s["neurons"]["top"]) == 3 and s["neurons"]["errors"] == []
    assert set(s["neurons"]["top"][0]) == {"channel", "Neuron IG", "DeepLIFT", "reset effect"}


def test_each_command_keeps_what_the_others_wrote(tmp_path, capsys):
    common = ["photo:coffee", "--model", "digits-cnn", "--steps", "4", "--out", tmp_path]
    assert run(capsys, "explain", *common, "--method", "ig")[0] == 0
    explained = (tmp_path / "coffee" / "report.html").read_bytes()
    assert run(capsys, "neurons", *common, "--layer", "features.relu2", "--top", "2")[0] == 0
    assert run(capsys, "evaluate", *common, "--method", "saliency", "--curve-steps", "4",
               "--metrics", "deletion")[0] == 0
    assert (tmp_path / "coffee" / "report.html").read_bytes() == explained
    s = json.loads((tmp_path / "coffee" / "summary.json").read_text())
    assert list(s["methods"]) == ["ig"]
    for command in ("neurons", "evaluate"):
        assert (tmp_path / "coffee" / command / "report.html").is_file()


@pytest.mark.slow
def test_text_pair(tmp_path, capsys):
    code, out, err = run(capsys, "explain", "--text", "A cat sits on the mat.", "--pair",
                         "A kitten rests on a rug.", "--steps", "4", "--out", tmp_path)
    assert code == 0, err
    assert "cosine similarity" in out and "|raises" in out and "cat" in out
    (folder,) = (tmp_path / "text").iterdir()
    entries = json.loads((folder / "tokens.json").read_text())
    assert [e["sentence"] for e in entries] == ["A cat sits on the mat.",
                                                "A kitten rests on a rug."]
    assert entries[0]["tokens"][:2] == ["a", "cat"]
    assert len(entries[0]["tokens"]) == len(entries[0]["attributions"])
    page = (folder / "report.html").read_text()
    assert page.count('class="tok"') == sum(len(e["tokens"]) for e in entries)


@pytest.fixture
def files(tmp_path):
    from tests.test_run import bomb_png

    (tmp_path / "notes.jpg").write_text("not an image")
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("")
    (tmp_path / "bomb.png").write_bytes(bomb_png())
    Image.new("L", (100000, 1)).save(tmp_path / "strip.png")  # a few hundred bytes
    with zipfile.ZipFile(tmp_path / "broken.pt", "w") as z:  # looks like TorchScript, is not
        z.writestr("broken/code/__torch__.py", "garbage")
    return tmp_path


@pytest.mark.parametrize("args, message", [
    (["explain", "missing.jpg"], "IMAGE: no such file: 'missing.jpg'"),
    (["explain", "{tmp}/notes.jpg"], "IMAGE: cannot read"),
    (["explain", "photo:nope"], "IMAGE: unknown bundled photo 'nope'"),
    (["explain", "photo:camera", "--model", "efficientnet-lit0"],
     "--model: unknown model 'efficientnet-lit0'; did you mean efficientnet-lite0, "
     "efficientnet-lite1?"),
    (["explain", "photo:camera", "--model", "nosuchmodule:make"], "--model: cannot import"),
    (["explain", "photo:camera", "--model", "{tmp}/none.pt"], "--model: no such file"),
    (["explain", "photo:camera", "--method", "ig,magic"], "--method: unknown method 'magic'"),
    (["explain", "photo:camera", *DIGITS, "--target", "10"],
     "--target: class 10 is out of range for a model with 10 outputs"),
    (["explain", "photo:camera", *DIGITS, "--target", "cat"], "--target: unknown class 'cat'"),
    (["neurons", "photo:camera", *DIGITS, "--layer", "features.relu"],
     "--layer: unknown layer 'features.relu'; close names: features.relu2, features.relu1"),
    (["explain"], "IMAGE: give images, or --text, or --smiles, or --demo"),
    (["explain", "photo:camera", "--text", "hi"],
     "IMAGE: give images, or --text, or --smiles, or --demo"),
    (["explain", "photo:camera", "--pair", "hi"], "--pair: only with --text"),
    (["explain", "--text", "hi", "--method", "ig"], "--method: not used with --text"),
    (["explain", "--text", " "], "--text: empty sentence"),
    (["explain", "photo:camera", "--steps", "0"], "argument --steps: expected a positive"),
    (["explain", "photo:camera", "--steps", "200000"], "argument --steps: at most 100000 steps"),
    (["run", "--data", "{tmp}", "--out", "{tmp}/never", "--steps", "200000"],
     "argument --steps: at most 100000 steps"),
    (["neurons", "photo:camera"], "the following arguments are required: --layer"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["explain", "{tmp}/adir"], "IMAGE: '{tmp}/adir' is a directory; give image files, or run"),
    (["explain", "{tmp}/bomb.png"], "IMAGE: '{tmp}/bomb.png' is too large to decode safely"),
    (["explain", "{tmp}/strip.png"], "IMAGE: strip: a 100000 x 1 image would be resized to "
                                     "25600000 x 256 pixels"),
    (["explain", "photo:camera", *DIGITS, "--out", "{tmp}/afile"],
     "--out: '{tmp}/afile' is not a directory"),
    (["explain", "photo:camera", *DIGITS, "--out", "{tmp}/afile/below"],
     "--out: '{tmp}/afile/below' is not a directory ('{tmp}/afile' is a file)"),
    (["explain", "photo:camera", "--model", "{tmp}/broken.pt"],
     "--model: cannot load TorchScript file '{tmp}/broken.pt': "),
    (["explain", "photo:camera", *DIGITS, "--size", "32"],
     "--size, --mean, --std: digits-cnn has its own preprocessing"),
    (["explain", "photo:camera", "--mean", "0.5,0.5"], "--mean: expected three numbers"),
    (["explain", "--text", "In the face of", "--generate", "300"],
     "--generate: at most 242 tokens fit after this prompt of 14"),
    (["run", "--model", "digits-cnn", "--data", "digits", "--layer",
      "features.conv1,features.conv1", "--out", "{tmp}/store"],
     "--layer: lists features.conv1 more than once"),
])
def test_bad_arguments_exit_2_with_one_line(files, capsys, monkeypatch, args, message):
    monkeypatch.chdir(files)  # the default --out, pathattr-out, lands there
    code, out, err = run(capsys, *(a.replace("{tmp}", str(files)) for a in args))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and message.replace("{tmp}", str(files)) in err, err
    assert not err.rstrip().endswith(":"), err  # never an error type with nothing after it


class Tiny(torch.nn.Module):
    """An image classifier for 224x224 inputs, small enough to run in milliseconds."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 5, stride=8)
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


def test_torchscript_model_file(tmp_path, capsys):
    torch.jit.script(Tiny().eval()).save(str(tmp_path / "tiny.pt"))
    code, _, err = run(capsys, "explain", "photo:rocket", "--model", tmp_path / "tiny.pt",
                       "--method", "saliency,ig", "--steps", "2", "--out", tmp_path, "--quiet")
    assert code == 0, err
    assert (tmp_path / "rocket" / "ig.png").exists()


class Fixed(torch.nn.Module):
    """A classifier for 32x32 RGB inputs only (its linear layer fixes the size)."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3 * 32 * 32, 3)

    def forward(self, x):
        return self.fc(x.flatten(1))


def test_model_failing_on_its_input_says_how_it_was_preprocessed(tmp_path, capsys):
    torch.jit.script(Fixed().eval()).save(str(tmp_path / "fixed.pt"))
    args = ["explain", "photo:rocket", "--model", tmp_path / "fixed.pt", "--method", "saliency",
            "--out", tmp_path, "--quiet"]
    code, _, err = run(capsys, *args)
    assert code == 2 and err.count("\n") == 1
    assert "failed on the input (1, 3, 224, 224) (224x224 RGB centre crop" in err, err
    assert "choose another preprocessing with --size, --mean, --std" in err
    code, _, err = run(capsys, *args, "--size", "32", "--mean", "0.485,0.456,0.406",
                       "--std", "0.229,0.224,0.225")
    assert code == 0, err


def test_default_preprocessing_is_efficientnets():
    from pathattr.named import Preprocessing
    from pathattr.zoo import photo, preprocess

    img = photo("rocket")
    torch.testing.assert_close(Preprocessing()(img), preprocess(img), atol=1e-6, rtol=0)


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path):
    from pathattr.named import load_image

    grey = np.linspace(0, 65535, 64 * 64).astype(np.uint16).reshape(64, 64)
    Image.fromarray(grey).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as img:
        assert img.mode.startswith("I")  # really a high-bit-depth image
    _, rgb = load_image(str(tmp_path / "deep.png"))
    got = np.asarray(rgb)
    assert got.shape == (64, 64, 3) and (got[..., 0] == got[..., 2]).all()
    np.testing.assert_array_equal(got[..., 0], np.rint(grey / 257).astype(np.uint8))
    assert len(np.unique(got)) == 256  # before: clipped to {0, 255}


def test_factory_weights_refused_pickles_and_failures(tmp_path, capsys, monkeypatch):
    (tmp_path / "tinynet.py").write_text(textwrap.dedent("""
        import torch
        def build():
            return torch.nn.Sequential(torch.nn.Conv2d(3, 2, 8, stride=32), torch.nn.Flatten(),
                                       torch.nn.Linear(2 * 7 * 7, 4))
        def broken():
            raise RuntimeError("no GPU here")
        class OneAtATime(torch.nn.Module):
            def forward(self, x):
                if len(x) > 1:
                    raise RuntimeError("one image at a time")
                return x.mean((2, 3))
        def fussy():
            return OneAtATime()
    """))
    monkeypatch.chdir(tmp_path)
    sys.modules.pop("tinynet", None)
    from_factory = ["explain", "photo:rocket", "--model", "tinynet:build", "--method", "ig",
                    "--steps", "2", "--out", tmp_path / "out", "--quiet"]
    torch.save({"0.weight": torch.zeros(2, 3, 8, 8)}, tmp_path / "bad.pt")
    code, _, err = run(capsys, *from_factory, "--weights", tmp_path / "bad.pt")
    assert code == 2 and "--weights: does not fit tinynet:build" in err

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 8, stride=32), torch.nn.Flatten(),
                                torch.nn.Linear(2 * 7 * 7, 4))
    torch.save(model.state_dict(), tmp_path / "w.pt")
    code, _, err = run(capsys, *from_factory, "--weights", tmp_path / "w.pt")
    assert code == 0, err

    code, _, err = run(capsys, "explain", "photo:rocket", "--model", tmp_path / "w.pt")
    assert code == 2 and "holds a state_dict; give the architecture too" in err

    torch.save(model, tmp_path / "pickled.pt")  # a whole pickled module: never unpickled
    code, _, err = run(capsys, "explain", "photo:rocket", "--model", tmp_path / "pickled.pt")
    assert code == 2 and "never unpickles arbitrary objects" in err

    code, _, err = run(capsys, "explain", "photo:rocket", "--model", "tinynet:broken")
    assert code == 2 and err == ("pathattr: error: --model: tinynet:broken() raised "
                                 "RuntimeError: no GPU here\n")

    # IG evaluates path points in batches, which this model refuses: IG fails alone, exit 1.
    code, _, err = run(capsys, "explain", "photo:rocket", "--model", "tinynet:fussy", "--method",
                       "saliency,ig", "--steps", "2", "--out", tmp_path / "fussy", "--quiet")
    assert code == 1
    assert err == ("pathattr: warning: ig failed on rocket: RuntimeError: the model failed on "
                   "what pathattr passed it (input 0: tensor (3, 3, 224, 224) float32 cpu): one "
                   "image at a time\n")
    s = json.loads((tmp_path / "fussy" / "rocket" / "summary.json").read_text())
    assert s["methods"]["saliency"]["error"] is None and "one image" in s["methods"]["ig"]["error"]


@pytest.mark.parametrize("command", ["explain", "evaluate", "neurons", "models"])
def test_help_has_examples(capsys, command):
    code, out, _ = run(capsys, command, "--help")
    assert code == 0 and "example" in out and f"pathattr {command}" in out


def test_models_lists_models_and_methods(capsys):
    code, out, _ = run(capsys, "models")
    assert code == 0 and "efficientnet-lite0" in out and "digits-cnn" in out and "minilm" in out
    assert "methods: ig" in out


def test_installed_entry_point():
    exe = Path(sys.executable).parent / "pathattr"
    done = subprocess.run([str(exe), "explain", "nothing.png"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2
    assert done.stderr == "pathattr: error: IMAGE: no such file: 'nothing.png'\n"


def test_a_language_model_folder_with_pickled_weights_is_a_usage_error(tmp_path, capsys):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPT2Config(vocab_size=40, n_embd=16, n_layer=1, n_head=2, n_positions=20)
    model = transformers.GPT2LMHeadModel(cfg)
    model.config.save_pretrained(tmp_path)
    torch.save({**model.state_dict(), "evil": Evil()}, tmp_path / "pytorch_model.bin")  # never
    # unpickled: an arbitrary object beside the weights
    code, _, err = run(capsys, "explain", "--text", "hello", "--generate", "2", "--model",
                       tmp_path, "--out", tmp_path / "out", "--quiet")
    assert code == 2 and "never unpickles arbitrary objects" in err
    assert "weights_only=False" not in err


class Evil:
    """An arbitrary object a pickled weights file may hold."""


def test_every_command_defaults_to_auto_steps(tmp_path, capsys):
    assert run(capsys, "explain", "photo:coffee", "--model", "digits-cnn", "--method", "ig",
               "--out", tmp_path / "e", "--quiet")[0] == 0
    s = json.loads((tmp_path / "e" / "coffee" / "summary.json").read_text())
    assert s["steps"] == "auto" and s["methods"]["ig"]["relative_delta"] <= 0.01
    assert run(capsys, "neurons", "photo:coffee", "--model", "digits-cnn", "--layer",
               "features.relu2", "--top", "2", "--out", tmp_path / "n", "--quiet")[0] == 0
    s = json.loads((tmp_path / "n" / "coffee" / "neurons" / "summary.json").read_text())
    assert s["steps"] == "auto"


def test_evaluate_signals(tmp_path, capsys):
    from pathattr.zoo.mnist1d import mnist1d_data

    np.savez(tmp_path / "signals.npz", x=mnist1d_data()[2][:5].numpy())  # (5, 1, 40)
    code, out, _ = run(capsys, "evaluate", "--data", str(tmp_path / "signals.npz"), "--model",
                       "mnist1d-cnn", "--method", "ig", "--steps", "8", "--curve-steps", "8",
                       "--metrics", "insertion,road_morf", "--out", tmp_path / "sig", "--quiet")
    assert code == 0
    doc = json.loads((tmp_path / "sig" / "evaluation.json").read_text())
    assert len(doc["inputs"]) == 5 and all(0 <= v <= 1 for v in doc["auc"]["ig"]["road_morf"])
    assert {"p_holm", "effect", "inputs_needed"} <= set(doc["comparisons"][0])
    code, _, err = run(capsys, "explain", "photo:coffee", "--model", "mnist1d-cnn",
                       "--out", tmp_path / "x")
    assert code != 0 and "1-D signals" in err


@pytest.mark.slow
def test_explain_a_molecule_draws_its_atoms(tmp_path, capsys):
    pytest.importorskip("torch_geometric")
    code = cli.main(["explain", "--smiles", "c1ccccc1O", "--model", "molecule-crippen",
                     "--method", "ig,deeplift", "--steps", "32", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    (folder,) = (tmp_path / "molecule").iterdir()
    assert {p.name for p in folder.iterdir()} == {"report.html", "atoms.json", "ig.png",
                                                  "deeplift.png"}
    doc = json.loads((folder / "atoms.json").read_text())
    assert doc["atoms"] == ["C0", "C1", "C2", "C3", "C4", "C5", "O6"]
    dl = doc["methods"]["deeplift"]
    # atoms plus bonds add up to F(x) - F(baseline) up to the reported gap
    assert abs(dl["delta"]) < 1e-4 and len(dl["atoms"]) == 7 and len(dl["bonds"]) == 7
    assert "O6" in out and "report:" in out
    html = (folder / "report.html").read_text()
    assert html.count("data:image/png;base64") >= 3  # the molecule and two maps


def test_explain_a_molecule_refuses_bad_input_by_flag(tmp_path, capsys):
    pytest.importorskip("torch_geometric")
    for args, msg in ((["--smiles", "C1CC"], "--smiles: RDKit cannot parse"),
                      (["--smiles", "CCO", "--model", "digits-cnn"], "--model: 'digits-cnn' is "
                                                                       "not a molecule model"),
                      (["--smiles", "CCO", "--method", "blur-ig"],
                       "--method: unknown method 'blur-ig' for molecules"),
                      (["--smiles", "CCO", "--layer", "x"], "--layer: not used with --smiles"),
                      (["--smiles", "CCO", "photo:chelsea"], "exactly one")):
        assert cli.main(["explain", *args, "--out", str(tmp_path)]) == 2
        assert msg in capsys.readouterr().err
    assert not (tmp_path / "molecule").exists()


@pytest.mark.slow
def test_explain_a_translation_writes_the_alignment(tmp_path, capsys):
    pytest.importorskip("cn2en")
    code = cli.main(["explain", "--text", "我爱你。", "--model", "cn2en", "--generate", "10",
                     "--method", "ig,deeplift", "--quiet", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    (folder,) = (tmp_path / "generation").iterdir()
    doc = json.loads((folder / "deeplift" / "tokens.json").read_text())
    # the model's own translation, stopped at its end token, not 10 tokens
    assert doc["targets"] == ["i", "love", "you", "."] and doc["encoder_decoder"]
    assert doc["tokens"][:5] == ["我", "爱", "你", "。", "EOS"]
    assert max(doc["relative_delta"]) < 1e-4
    assert (folder / "ig" / "heatmap.png").stat().st_size > 5000


FACTORIES = '''
import torch
def boom():
    raise RuntimeError("factory exploded")
def ok():
    return torch.nn.Sequential(torch.nn.Conv2d(3, 2, 8, stride=32), torch.nn.Flatten(),
                               torch.nn.Linear(2 * 7 * 7, 4)).eval()
class Twice(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.fc = torch.nn.Conv2d(3, 3, 3, padding=1), torch.nn.Linear(3, 4)
    def forward(self, x):
        return self.fc(self.conv(self.conv(x)).mean((2, 3)))
def twice():
    return Twice().eval()
'''


@pytest.mark.parametrize("case", ["factory raises", "pickled object", "size", "inputs",
                                  "inputs elsewhere", "read-only out", "layer runs twice"])
def test_bad_arguments_are_one_line_naming_the_flag_before_any_work(case, tmp_path, capsys,
                                                                   monkeypatch):
    import pickle

    monkeypatch.chdir(tmp_path)
    (tmp_path / "nets.py").write_text(FACTORIES)
    sys.modules.pop("nets", None)
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"a": 1}, protocol=4))
    out = tmp_path / "out"
    explain = ["explain", "photo:chelsea", "--method", "saliency", "--out", out, "--quiet"]
    args, flag = {
        "factory raises": ([*explain, "--model", "nets:boom"], "--model"),
        "pickled object": ([*explain, "--model", "nets:ok", "--weights", "evil.pkl"],
                           "--weights"),
        "size": ([*explain, "--model", "nets:ok", "--size", "9000"], "--size"),
        "inputs": (["reproduce", "idg", "--inputs", "-5"], "--inputs"),
        "inputs elsewhere": (["reproduce", "ig", "--inputs", "5"], "--inputs"),
        "read-only out": ([*explain, "--model", "nets:ok"], "--out"),
        "layer runs twice": ([*explain, "--model", "nets:twice", "--layer", "conv"],
                             "--layer: layer 'conv' was executed 2 times"),
    }[case]
    if case == "read-only out":  # root writes anywhere: the check is what is tested
        out.mkdir()
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, mode: real(p, mode) and Path(p) != out)
    code, _, err = run(capsys, *args)
    assert code == 2 and flag in err and err.count("\n") == 1, err
    assert "python -m" not in err and "Warning" not in err
    assert not out.exists() or list(out.iterdir()) == []
