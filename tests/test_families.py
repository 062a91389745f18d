"""DeepLIFT and IG on every architecture family ``transformers`` builds from a small config.

One cell per (family, dtype, rule, batch, baseline): DeepLIFT's contributions must sum to
``F(x) - F(x')`` recomputed here from two plain forwards of the model (not from pathattr's
own ``output_delta``), to 1e-5 relative in float32 and 1e-10 in float64 where the model itself
computes in float64 (families that upcast their norms or softmax to float32 inside get the
float32 bound). Per family and dtype, IG's reported gap must equal the gap recomputed from
plain forwards. A refusal must be a documented error. Random weights, nothing downloaded.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import torch

import pathattr
from pathattr.methods.deeplift import NoDeepLiftRule

T = pytest.importorskip("transformers")
V, L = 40, 6  # vocabulary, tokens per prompt
TEXT = dict(vocab_size=V, hidden_size=16, intermediate_size=24, num_hidden_layers=2,
            num_attention_heads=4)
DECODER = dict(TEXT, num_key_value_heads=2, pad_token_id=0, bos_token_id=1, eos_token_id=2)


@dataclass
class Family:
    build: Callable[[], torch.nn.Module]
    kind: str                     # ids | causal | seq2seq | pixels | audio | speech2seq
    layer: str | None = None      # where LayerDeepLift cuts for token ids
    layer_input: bool = False     # attribute to the layer's input
    upcasts: bool = False         # computes norms / softmax in float32 even in float64
    pad: int = 0
    shape: tuple = ()             # one float input's shape, without the batch
    extra: dict = field(default_factory=dict)
    refuses: str | None = None    # DeepLIFT refuses, naming this op
    float64: bool = True          # the model runs in float64


ATTENTION = ["sdpa"]  # the kernel the next build asks for (eager where sdpa is not offered)


def _cfg(cls, **kw):
    cfg = cls(**kw)
    cfg._attn_implementation = ATTENTION[0]
    return cfg


def _lm(cfg_cls, model_cls, **kw):
    return lambda: model_cls(_cfg(cfg_cls, **{**DECODER, **kw}))


FAMILIES = {
    "bert": Family(lambda: T.BertForSequenceClassification(_cfg(T.BertConfig, **TEXT)), "ids",
                   "bert.embeddings.word_embeddings"),
    "distilbert": Family(lambda: T.DistilBertForSequenceClassification(_cfg(
        T.DistilBertConfig, vocab_size=V, dim=16, hidden_dim=24, n_layers=2, n_heads=4)), "ids",
        "distilbert.embeddings.word_embeddings"),
    "roberta": Family(lambda: T.RobertaForSequenceClassification(_cfg(
        T.RobertaConfig, **TEXT, pad_token_id=1, max_position_embeddings=20)), "ids",
        "roberta.embeddings", pad=1),
    "albert": Family(lambda: T.AlbertForSequenceClassification(_cfg(
        T.AlbertConfig, **TEXT, embedding_size=8)), "ids", "albert.embeddings.word_embeddings"),
    "deberta-v2": Family(lambda: T.DebertaV2ForSequenceClassification(_cfg(
        T.DebertaV2Config, **TEXT)), "ids", "deberta.embeddings.word_embeddings"),
    "electra": Family(lambda: T.ElectraForSequenceClassification(_cfg(
        T.ElectraConfig, **TEXT, embedding_size=8)), "ids", "electra.embeddings.word_embeddings"),
    "gpt2": Family(lambda: T.GPT2LMHeadModel(_cfg(T.GPT2Config, vocab_size=V, n_embd=16,
                                                   n_layer=2, n_head=4, n_positions=20)),
                   "causal", "transformer.wte"),
    "gpt-neox": Family(_lm(T.GPTNeoXConfig, T.GPTNeoXForCausalLM), "causal", "gpt_neox.embed_in"),
    "opt": Family(lambda: T.OPTForCausalLM(_cfg(
        T.OPTConfig, vocab_size=V, hidden_size=16, ffn_dim=24, num_hidden_layers=2,
        num_attention_heads=4, word_embed_proj_dim=16, pad_token_id=1)), "causal",
        "model.decoder.embed_tokens", pad=1),
    "bloom": Family(lambda: T.BloomForCausalLM(_cfg(T.BloomConfig, vocab_size=V, hidden_size=16,
                                                     n_layer=2, n_head=4)),
                    "causal", "transformer.word_embeddings", upcasts=True),
    "falcon": Family(lambda: T.FalconForCausalLM(_cfg(
        T.FalconConfig, vocab_size=V, hidden_size=16, num_hidden_layers=2,
        num_attention_heads=4)), "causal", "transformer.word_embeddings"),
    "llama": Family(_lm(T.LlamaConfig, T.LlamaForCausalLM), "causal", "model.embed_tokens",
                    upcasts=True),
    "mistral": Family(_lm(T.MistralConfig, T.MistralForCausalLM, sliding_window=None), "causal",
                      "model.embed_tokens", upcasts=True),
    "qwen2": Family(_lm(T.Qwen2Config, T.Qwen2ForCausalLM), "causal", "model.embed_tokens",
                    upcasts=True),
    "qwen3": Family(_lm(T.Qwen3Config, T.Qwen3ForCausalLM, head_dim=4), "causal",
                    "model.embed_tokens", upcasts=True),
    "phi3": Family(_lm(T.Phi3Config, T.Phi3ForCausalLM), "causal", "model.embed_tokens",
                   upcasts=True),
    "gemma": Family(_lm(T.GemmaConfig, T.GemmaForCausalLM, head_dim=4), "causal",
                    "model.embed_tokens", upcasts=True),
    "gemma2": Family(_lm(T.Gemma2Config, T.Gemma2ForCausalLM, head_dim=4), "causal",
                     "model.embed_tokens", upcasts=True),
    "mixtral": Family(_lm(T.MixtralConfig, T.MixtralForCausalLM, num_local_experts=2,
                          num_experts_per_tok=1, sliding_window=None), "causal",
                      "model.embed_tokens", upcasts=True, refuses="torch.topk", float64=False),
    "t5": Family(lambda: T.T5ForConditionalGeneration(_cfg(
        T.T5Config, vocab_size=V, d_model=16, d_kv=4, d_ff=24, num_layers=2, num_heads=4,
        decoder_start_token_id=0)), "seq2seq", "encoder.block.0", layer_input=True,
        upcasts=True),
    "bart": Family(lambda: T.BartForConditionalGeneration(_cfg(
        T.BartConfig, vocab_size=V, d_model=16, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=24,
        decoder_ffn_dim=24, max_position_embeddings=20, pad_token_id=1)), "seq2seq",
        "model.encoder.layers.0", layer_input=True, pad=1),
    "marian": Family(lambda: T.MarianMTModel(_cfg(
        T.MarianConfig, vocab_size=V, d_model=16, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=24,
        decoder_ffn_dim=24, max_position_embeddings=20, pad_token_id=V - 1,
        decoder_start_token_id=V - 1)), "seq2seq", "model.encoder.layers.0", layer_input=True,
        pad=V - 1),
    "pegasus": Family(lambda: T.PegasusForConditionalGeneration(_cfg(
        T.PegasusConfig, vocab_size=V, d_model=16, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=24,
        decoder_ffn_dim=24, max_position_embeddings=20)), "seq2seq",
        "model.encoder.layers.0", layer_input=True),
    "vit": Family(lambda: T.ViTForImageClassification(_cfg(
        T.ViTConfig, image_size=8, patch_size=4, hidden_size=16, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=24)), "pixels", shape=(3, 8, 8)),
    "deit": Family(lambda: T.DeiTForImageClassification(_cfg(
        T.DeiTConfig, image_size=8, patch_size=4, hidden_size=16, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=24)), "pixels", shape=(3, 8, 8)),
    "convnext": Family(lambda: T.ConvNextForImageClassification(_cfg(
        T.ConvNextConfig, num_channels=3, hidden_sizes=[8, 16], depths=[1, 1],
        num_stages=2, image_size=16)), "pixels", shape=(3, 16, 16)),
    "swin": Family(lambda: T.SwinForImageClassification(_cfg(
        T.SwinConfig, image_size=16, patch_size=4, embed_dim=8, depths=[1, 1],
        num_heads=[2, 2], window_size=2)), "pixels", shape=(3, 16, 16)),
    "clip-vision": Family(lambda: T.CLIPVisionModelWithProjection(_cfg(
        T.CLIPVisionConfig, image_size=8, patch_size=4, hidden_size=16, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=24, projection_dim=8)), "pixels",
        shape=(3, 8, 8), extra={"output": "image_embeds"}),
    "clip-text": Family(lambda: T.CLIPTextModelWithProjection(_cfg(
        T.CLIPTextConfig, vocab_size=V, hidden_size=16, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=24, projection_dim=8,
        max_position_embeddings=20, eos_token_id=2)), "ids",
        "text_model.embeddings.token_embedding", extra={"output": "text_embeds"}),
    "wav2vec2": Family(lambda: T.Wav2Vec2ForSequenceClassification(_cfg(
        T.Wav2Vec2Config, hidden_size=16, num_hidden_layers=1, num_attention_heads=4,
        intermediate_size=24, conv_dim=(8, 8), conv_stride=(4, 4), conv_kernel=(8, 4),
        num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2,
        classifier_proj_size=8)), "audio", shape=(160,)),
    "whisper": Family(lambda: T.WhisperForConditionalGeneration(_cfg(
        T.WhisperConfig, vocab_size=V, d_model=16, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=24,
        decoder_ffn_dim=24, num_mel_bins=8, max_source_positions=8, max_target_positions=20,
        pad_token_id=0, decoder_start_token_id=1, bos_token_id=1, eos_token_id=2,
        suppress_tokens=None, begin_suppress_tokens=None)), "speech2seq", shape=(8, 16)),
    "mamba": Family(lambda: T.MambaForCausalLM(_cfg(
        T.MambaConfig, vocab_size=V, hidden_size=16, state_size=4, num_hidden_layers=2,
        expand=2, conv_kernel=2)), "causal", "backbone.embeddings",
        upcasts=True),
}

_MODELS: dict = {}


def _model(name: str, dtype: torch.dtype) -> torch.nn.Module:
    if (name, dtype) not in _MODELS:
        torch.manual_seed(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                model = FAMILIES[name].build()
            except ValueError:  # no sdpa: eager attention (which softmaxes in float32)
                ATTENTION[0] = "eager"
                model = FAMILIES[name].build()
                FAMILIES[name].upcasts = True
            finally:
                ATTENTION[0] = "sdpa"
            _MODELS[name, dtype] = model.to(dtype).eval()
    return _MODELS[name, dtype]


def _case(name: str, dtype: torch.dtype, padded: bool, baseline: str):
    """(x, baselines, target, forward_kwargs, output, plain-forward score of an input)."""
    fam = FAMILIES[name]
    g = torch.Generator().manual_seed(1)
    n = 2 if padded else 1
    kwargs, output = {}, fam.extra.get("output", "logits")
    if fam.kind in ("pixels", "audio", "speech2seq"):
        x = torch.randn(n, *fam.shape, generator=g, dtype=dtype)
        base = {"pad": torch.full_like(x, 0.5), "zeros": torch.zeros_like(x),
                "other": 0.3 * torch.randn(x.shape, generator=g, dtype=dtype)}[baseline]
        if padded and fam.kind == "audio":
            mask = torch.ones(n, fam.shape[0], dtype=torch.long)
            mask[1, -40:] = 0
            kwargs["attention_mask"] = mask
        if fam.kind == "speech2seq":
            kwargs["decoder_input_ids"] = torch.tensor([[1, 5, 7, 9]] * n)
    else:
        x = torch.randint(3, V - 1, (n, L), generator=g)
        if name == "clip-text":  # CLIP pools at the end-of-sequence id (the largest id)
            x[:, -1] = V - 1
        pad = torch.full_like(x, fam.pad)
        if name == "clip-text":
            pad[:, -1] = V - 1
        base = {"pad": pad, "zeros": torch.where(pad == fam.pad, 0, pad) if name != "clip-text"
                else torch.cat([torch.zeros_like(x[:, :-1]), x[:, -1:]], 1),
                "other": torch.cat([torch.randint(3, V - 1, (n, L - 1), generator=g),
                                    x[:, -1:]], 1)}[baseline]
        if padded:
            mask = torch.ones_like(x)
            mask[1, -2:] = 0
            kwargs["attention_mask"] = mask
        if fam.kind == "seq2seq":
            kwargs["decoder_input_ids"] = torch.tensor([[0, 5, 7, 9]] * n)
    if fam.kind in ("causal", "seq2seq", "speech2seq"):
        target = (2, 7)
    elif output == "logits":
        target = 1
    else:
        target = 3

    def score(inp):
        model = _model(name, dtype)
        key = {"ids": "input_ids", "causal": "input_ids", "seq2seq": "input_ids",
               "pixels": "pixel_values", "audio": "input_values",
               "speech2seq": "input_features"}[fam.kind]
        with torch.no_grad():
            out = getattr(model(**{key: inp}, **kwargs), output)
        return out[:, target[0], target[1]] if isinstance(target, tuple) else out[:, target]
    return x, base, target, kwargs, output, score


def _bound(name: str, dtype: torch.dtype) -> float:
    return 1e-10 if dtype == torch.float64 and not FAMILIES[name].upcasts else 1e-5


CELLS = [(name, dtype, padded, baseline)
         for name in FAMILIES for dtype in (torch.float32, torch.float64)
         if dtype == torch.float32 or FAMILIES[name].float64
         for padded in (False, True) for baseline in ("pad", "zeros", "other")]


@pytest.mark.parametrize("name,dtype,padded,baseline", CELLS,
                         ids=[f"{c[0]}-{str(c[1])[6:]}-{'padded' if c[2] else 'one'}-{c[3]}"
                              for c in CELLS])
def test_deeplift_sums_to_the_models_own_output_change(name, dtype, padded, baseline):
    fam = FAMILIES[name]
    model = _model(name, dtype)
    x, base, target, kwargs, output, score = _case(name, dtype, padded, baseline)
    f_x, f_base = score(x).double(), score(base).double()
    d_f = f_x - f_base
    # rounding in the model's dtype scales with its outputs, not only with their difference
    scale = torch.stack([d_f.abs(), f_x.abs(), f_base.abs()]).amax(0).clamp_min(1e-3)
    if fam.refuses:
        with pytest.raises(NoDeepLiftRule, match=fam.refuses):
            pathattr.DeepLift(model).attribute(x, base, target=target, forward_kwargs=kwargs,
                                               output=output) if fam.layer is None else \
                pathattr.LayerDeepLift(model, fam.layer).attribute(
                    x, base, target=target, forward_kwargs=kwargs, output=output)
        return
    for rule in ("rescale", "revealcancel"):
        if fam.layer is None:
            r = pathattr.DeepLift(model, nonlinearity=rule).attribute(
                x, base, target=target, forward_kwargs=kwargs, output=output)
        else:
            r = pathattr.LayerDeepLift(model, fam.layer, nonlinearity=rule).attribute(
                x, base, target=target, forward_kwargs=kwargs, output=output,
                attribute_to_layer_input=fam.layer_input)
        total = r.attributions.flatten(1).sum(1).double()
        err = ((total - d_f).abs() / scale).max()
        assert err <= _bound(name, dtype), (rule, float(err), r.info["rules"])
        # the reported gap is the one recomputed here
        assert ((r.delta.double() - (total - d_f)).abs() / scale).max() <= _bound(name, dtype)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_ig_reports_the_gap_plain_forwards_give(name):
    fam = FAMILIES[name]
    dtype = torch.float64 if fam.float64 else torch.float32
    model = _model(name, dtype)
    x, base, target, kwargs, output, score = _case(name, dtype, True, "other")
    if fam.layer is None:
        r = pathattr.IntegratedGradients(model).attribute(
            x, base, target=target, steps=8, forward_kwargs=kwargs, output=output)
    else:
        try:
            r = pathattr.LayerIntegratedGradients(model, fam.layer).attribute(
                x, base, target=target, steps=8, forward_kwargs=kwargs, output=output,
                attribute_to_layer_input=fam.layer_input)
        except pathattr.errors.PathError as e:
            # the model reads the ids beyond the layer: refused, naming the cause
            assert "does not start at the baseline" in str(e)
            return
    d_f = score(x) - score(base)
    gap = r.attributions.flatten(1).sum(1) - d_f
    torch.testing.assert_close(r.delta, gap, rtol=1e-5, atol=1e-8 if fam.float64 else 1e-5)
