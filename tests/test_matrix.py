"""Every public method on every kind of model people explain, as they call it (no wrapper).

Each cell either works — its ``F(x) - F(x')`` equals the model's own, computed here by hand, and
complete methods close their gap — or raises the documented clear error (token ids into an
input-space method, Blur IG on non-images, AGI without one class per example, DeepLIFT through
ops that have no rule yet). Models are small random-weight configs in float64, plus the
pretrained MiniLM encoder.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import pytest
import torch
from nets import Recurrent
from torch import nn

import pathattr
from pathattr import registry
from pathattr.methods.deeplift import NoDeepLiftRule

transformers = pytest.importorskip("transformers")
D = torch.float64


@dataclass
class Case:
    model: object
    x: object
    target: object
    score: object          # x -> (B,) the explained scalar, computed without pathattr
    layer: str | None      # a layer that separates the input from the output
    baselines: object = None
    kwargs: dict = field(default_factory=dict)
    ids: bool = False      # x holds token ids
    images: bool = False
    classes: bool = True   # one integer class per example (AGI)
    deeplift: bool = True  # every op from the input up has a DeepLIFT rule
    deeplift_layer: bool = True  # every op above ``layer`` has one
    path_layer: str | None = None  # where the path runs for token ids (None: found)
    tol: float = 2e-2      # relative completeness gap allowed at 64 steps


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(6, 5), nn.Linear(3, 5)
        self.act, self.head = nn.Tanh(), nn.Linear(5, 4)

    def forward(self, u, v, scale):
        return self.head(self.act(self.a(u) + self.b(v))) * scale[:, None]


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
        self.fc = nn.Linear(8, 3)

    def forward(self, x, src_key_padding_mask=None):
        return self.fc(self.enc(x, src_key_padding_mask=src_key_padding_mask)[:, 0])


def _bert(cls, **kw):
    cfg = transformers.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1,
                                  num_attention_heads=2, intermediate_size=20,
                                  max_position_embeddings=16, **kw)
    return cls(cfg).to(D).eval()


def build(name: str) -> Case:
    torch.manual_seed(0)
    if name == "two-input":
        m = TwoInputs().to(D).eval()
        x = (torch.randn(3, 6, dtype=D), torch.randn(3, 3, dtype=D))
        s = torch.tensor([1.0, -2.0, 0.5], dtype=D)
        return Case(m, x, [0, 3, 1], lambda x: m(*x, s)[torch.arange(3), [0, 3, 1]], "act",
                    kwargs={"additional_forward_args": (s,)})
    if name == "bert-mask":
        m = _bert(transformers.BertForSequenceClassification, num_labels=3)
        ids = torch.randint(5, 40, (2, 6))
        mask = torch.ones_like(ids)
        mask[1, 4:] = 0
        return Case(m, ids, 2, lambda i: m(i, attention_mask=mask).logits[:, 2],
                    "bert.encoder.layer.0.output", kwargs={"forward_kwargs":
                                                          {"attention_mask": mask}},
                    ids=True)
    if name == "gpt2-next-token":
        cfg = transformers.GPT2Config(vocab_size=30, n_embd=16, n_layer=1, n_head=2,
                                      n_positions=12)
        m = transformers.GPT2LMHeadModel(cfg).to(D).eval()
        ids = torch.randint(0, 30, (2, 5))
        return Case(m, ids, (4, 7), lambda i: m(i).logits[:, 4, 7], "transformer.h.0",
                    ids=True, classes=False)
    if name == "vit":
        cfg = transformers.ViTConfig(image_size=8, patch_size=4, hidden_size=16,
                                     num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=20, num_labels=3)
        m = transformers.ViTForImageClassification(cfg).to(D).eval()
        x = torch.randn(2, 3, 8, 8, dtype=D)
        return Case(m, x, 1, lambda x: m(x).logits[:, 1], "vit.layernorm", images=True)
    if name in ("lstm", "gru"):
        m = Recurrent(nn.LSTM if name == "lstm" else nn.GRU).to(D).eval()
        ids = torch.randint(1, 20, (2, 5))
        return Case(m, ids, 2, lambda i: m(i)[:, 2], "rnn[0]", ids=True, path_layer="emb")
    if name == "transformer-encoder":
        m = Encoder().to(D).eval()
        x, base = torch.randn(2, 4, 8, dtype=D), torch.randn(2, 4, 8, dtype=D)
        pad = torch.tensor([[False] * 4, [False, False, True, True]])
        return Case(m, x, 0, lambda x: m(x, src_key_padding_mask=pad)[:, 0], "fc",
                    baselines=base, kwargs={"forward_kwargs": {"src_key_padding_mask": pad}},
                    tol=0.1)
    if name == "token-classification":
        m = _bert(transformers.BertForTokenClassification, num_labels=4)
        ids = torch.randint(5, 40, (2, 6))
        return Case(m, ids, [(1, 3), (5, 0)],
                    lambda i: m(i).logits[torch.arange(2), [1, 5], [3, 0]],
                    "bert.encoder.layer.0.output", ids=True, classes=False)
    if name == "scalar-function":
        def f(x):
            return torch.sin(x) * x
        return Case(f, torch.linspace(-2, 2, 5, dtype=D), None, f, None, classes=False)
    raise KeyError(name)


MODELS = ["two-input", "bert-mask", "gpt2-next-token", "vit", "lstm", "gru",
          "transformer-encoder", "token-classification", "scalar-function"]
COMPLETE = {"ig", "ig-auto", "layer-ig", "conductance", "deeplift", "layer-deeplift",
            "explain"}


#: Each registry method's settings here (small step counts: the matrix checks that every
#: method runs on every model, and completeness where it holds, not convergence).
SETTINGS: dict[str, dict] = {
    "ig": {"steps": 64}, "ig-auto": {"tol": 1e-3}, "idg": {"steps": 16},
    "idg-uniform": {"steps": 16}, "left-ig": {"steps": 16}, "idgi": {"steps": 16},
    "guided-ig": {"steps": 16}, "guided-ig-idgi": {"steps": 16},
    "blur-ig": {"max_sigma": 2, "steps": 8}, "blur-ig-idgi": {"max_sigma": 2, "steps": 8},
    "expected-gradients": {"samples": 4}, "agi": {"classes": 1, "steps": 3},
    "smoothgrad": {"samples": 2}, "layer-ig": {"steps": 64}, "conductance": {"steps": 64},
    "neuron-conductance": {"steps": 16},
}
#: Methods that take no baselines argument.
NO_BASELINES = {"saliency", "smoothgrad", "blur-ig", "blur-ig-idgi", "agi"}


def call(method: str, c: Case):
    kw = {"target": c.target, **c.kwargs, **SETTINGS.get(method, {})}
    m, x, base = c.model, c.x, c.baselines
    layer = c.layer or "layer"
    if method == "explain":
        r = pathattr.explain(m, x, ["ig", "idg", "left-ig", ("conductance", layer)], base,
                             steps=64, path_layer=c.path_layer, **kw)
        return r["ig"]
    info = registry.METHODS[method]
    if method == "smoothgrad":  # around Saliency
        made = pathattr.SmoothGrad(pathattr.Saliency(m), samples=kw.pop("samples"))
    elif info.space == "layer":
        made = registry.make(method, m, layer)
        if c.path_layer is not None and "path_layer" in inspect.signature(
                type(made)).parameters:
            made = type(made)(m, layer, path_layer=c.path_layer)
    else:
        made = registry.make(method, m)
    args = ([0, 1],) if method == "neuron-conductance" else ()
    if method not in NO_BASELINES:  # Expected Gradients samples from a given distribution
        kw["baselines"] = _baseline_inputs(c) if method == "expected-gradients" else base
    kw.update({k: v for k, v in info.attribute.items() if k not in kw})
    return made.attribute(x, *args, **kw)


METHODS = [*registry.METHODS, "explain"]
INPUT_SPACE = {n for n, m in registry.METHODS.items() if m.space == "input"}
LAYER_SPACE = {n for n, m in registry.METHODS.items() if m.space == "layer"}


def expected_error(method: str, c: Case):
    """The documented error this cell raises, or None when it must work."""
    if not isinstance(c.model, nn.Module) and (method in LAYER_SPACE or "deeplift" in method
                                               or method == "explain"):
        return TypeError, "nn.Module"
    if method.startswith("blur-ig") and not c.images:
        return ValueError, "Blur IG needs images"
    if c.ids and method == "smoothgrad":  # around Saliency, which has no layer to noise
        return TypeError, "integer ids, which take no noise"
    if c.ids and method == "expected-gradients":
        return TypeError, "floating \\(K, \\*S\\) tensor"
    if c.ids and method in INPUT_SPACE:
        return TypeError, "floating-point tensor"
    if method == "agi" and not c.classes:
        return TypeError, "one integer class per example"
    if method.startswith("deeplift") and not c.deeplift:
        return NoDeepLiftRule, ""
    if method == "layer-deeplift" and not c.deeplift_layer:
        return NoDeepLiftRule, ""
    return None


def _baseline_inputs(c: Case):
    if c.baselines is not None:
        return c.baselines
    if isinstance(c.x, tuple):
        return tuple(torch.zeros_like(t) for t in c.x)
    return torch.zeros_like(c.x)


def _total(a) -> torch.Tensor:
    parts = a if isinstance(a, tuple) else (a,)
    return sum(p.reshape(p.shape[0], -1).sum(1) for p in parts)


@pytest.mark.parametrize("model_name", MODELS)
def test_every_method_on_every_model(model_name):
    c = build(model_name)
    with torch.no_grad():
        out_delta = c.score(c.x) - c.score(_baseline_inputs(c))
    for method in METHODS:
        err = expected_error(method, c)
        if err is not None:
            with pytest.raises(err[0], match=err[1]):
                call(method, c)
            continue
        r = call(method, c)
        assert isinstance(r, pathattr.Attribution), method
        parts = r.attributions if isinstance(r.attributions, tuple) else (r.attributions,)
        assert all(torch.isfinite(p).all() and not p.requires_grad for p in parts), method
        # AGI's and Blur IG's ends are not x' (their own baselines); Expected Gradients'
        # are the sampled references
        if "output_delta" in r.info and method not in ("agi", "blur-ig", "blur-ig-idgi",
                                                       "expected-gradients"):
            torch.testing.assert_close(r.info["output_delta"], out_delta, rtol=1e-9,
                                       atol=1e-12, msg=f"{model_name} {method}")
        if method in COMPLETE:
            torch.testing.assert_close(r.delta, _total(r.attributions) - out_delta,
                                       rtol=1e-7, atol=1e-10, msg=f"{model_name} {method}")
            rel = (r.delta.abs() / out_delta.abs().clamp_min(1e-9)).max().item()
            assert rel < c.tol, (model_name, method, rel)


@pytest.mark.slow
def test_pretrained_minilm_with_mask():
    from pathattr.zoo.text import minilm

    tokenizer, encoder = minilm()
    batch = tokenizer(["a cat sleeps on the sofa", "stocks fell"], padding=True,
                      return_tensors="pt")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    pad = tokenizer.pad_token_id
    kw = {"target": (0, 5), "forward_kwargs": {"attention_mask": mask},
          "output": "last_hidden_state"}
    bert = encoder.bert
    with torch.no_grad():
        out_delta = (bert(ids, attention_mask=mask).last_hidden_state[:, 0, 5]
                     - bert(torch.full_like(ids, pad),
                            attention_mask=mask).last_hidden_state[:, 0, 5])
    lig = pathattr.LayerIntegratedGradients(bert, "embeddings.word_embeddings").attribute(
        ids, pad, steps=64, **kw)
    torch.testing.assert_close(lig.info["output_delta"], out_delta, rtol=1e-5, atol=1e-6)
    assert (lig.delta.abs() / out_delta.abs()).max() < 1e-2
    lc = pathattr.LayerConductance(bert, "encoder.layer.3.output").attribute(ids, pad, **kw)
    assert lc.relative_delta().max() < 1e-2
    # the padded positions of the short sentence are masked out: they get nothing
    short = int(mask[1].sum())
    assert lig.attributions[1, short:].abs().max() < 1e-6
    for rule in ("rescale", "revealcancel"):  # exact summation-to-delta, through the mask
        dl = pathattr.LayerDeepLift(bert, "embeddings.word_embeddings", rule).attribute(
            ids, pad, **kw)
        torch.testing.assert_close(dl.info["output_delta"], out_delta, rtol=1e-5, atol=1e-6)
        assert (dl.delta.abs() / out_delta.abs()).max() < 1e-5, rule  # float32
        assert dl.attributions[1, short:].abs().max() < 1e-6
