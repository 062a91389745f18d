"""``pathattr explain --text PROMPT --generate N`` (or ``--target-text``): attribute each token
of a language model's continuation to the prompt and the tokens before it
(``SequenceAttribution``), with a heatmap, per-target colouring and ``tokens.json``."""

from __future__ import annotations

import json
import pickle
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .. import viz
from ..errors import first_line
from ..files import make_dirs, text_folder, write_file
from . import UsageError

#: Language models ``--model`` may name with ``--generate`` / ``--target-text`` (besides the
#: path of a local HuggingFace model directory).
LANGUAGE_MODELS = {"tiny-lm": "character-level GPT-2 trained on the Zen of Python (cached)",
                   "cn2en": "Chinese-to-English GRU encoder-decoder, pretrained (cn2en)"}


@dataclass
class LanguageModel:
    """A model and its tokenizer behind what the command needs: ``prompt(text)`` ids (with
    the tokenizer's special tokens), ``continuation(text)`` ids (without), ``tokens(ids)``
    one display string per id, ``decode(ids)`` text."""

    model: nn.Module
    prompt: Callable[[str], list[int]]
    continuation: Callable[[str], list[int]]
    tokens: Callable[[list[int]], list[str]]
    decode: Callable[[list[int]], str]
    description: str
    #: An encoder-decoder with a vocabulary per side: the encoder's tokens (default ``tokens``).
    source_tokens: Callable[[list[int]], list[str]] | None = None
    #: Its own greedy decoding up to its end token, ``(prompt ids, most tokens) -> ids``
    #: (default ``SequenceAttribution.generate``: exactly the tokens asked for).
    generate: Callable[[list[int], int], list[int]] | None = None
    #: Baseline ids ``(1, prompt + targets)`` for ``(prompt length, targets)`` (default the
    #: model's pad id).
    baselines: Callable[[int, int], torch.Tensor] | None = None


def load_language_model(name: str, progress: bool = True) -> LanguageModel:
    """``tiny-lm``, or a directory written by ``save_pretrained`` holding a causal LM
    (``AutoModelForCausalLM``) or an encoder-decoder (``AutoModelForSeq2SeqLM``, when its
    config says ``is_encoder_decoder``) and its tokenizer, loaded offline, in eval mode.
    Raises ``UsageError``."""
    if name in LANGUAGE_MODELS:
        from ..zoo.tinylm import tiny_lm

        if name == "cn2en":
            return _translator(f"{name}: {LANGUAGE_MODELS[name]}")
        tok, lm = tiny_lm(progress=progress)
        return LanguageModel(lm, tok, tok, tok.tokens, tok.decode,
                             f"{name}: {LANGUAGE_MODELS[name]}")
    path = Path(name)
    if not (path / "config.json").is_file():
        raise UsageError(f"--model: {name!r} is not a language model pathattr can load offline;"
                         f" with --generate / --target-text use {', '.join(LANGUAGE_MODELS)} or "
                         "a local HuggingFace model directory (with config.json)")
    import transformers

    try:
        config = transformers.AutoConfig.from_pretrained(path, local_files_only=True)
        auto = transformers.AutoModelForSeq2SeqLM if config.is_encoder_decoder else \
            transformers.AutoModelForCausalLM
        lm = auto.from_pretrained(path, local_files_only=True).eval()
        tok = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
    except pickle.UnpicklingError:  # torch's advice (weights_only=False) is not ours to give
        raise UsageError(f"--model: {name!r} holds weights that are not tensors only; pathattr "
                         f"never unpickles arbitrary objects: save the model with "
                         f"save_pretrained(..., safe_serialization=True)") from None
    except (OSError, ValueError, KeyError) as e:
        raise UsageError(f"--model: cannot load {name!r} as a language model with its "
                         f"tokenizer: {first_line(e)}") from None
    kind = "encoder-decoder" if config.is_encoder_decoder else "causal LM"
    return LanguageModel(
        lm, lambda text: tok(text)["input_ids"],
        lambda text: tok(text, add_special_tokens=False)["input_ids"],
        tok.convert_ids_to_tokens, lambda ids: tok.decode(ids, skip_special_tokens=True),
        f"{path.name}: {type(lm).__name__} ({kind}) from {path}")


def _translator(description: str) -> LanguageModel:
    from ..zoo.translation import cn2en

    m = cn2en()
    return LanguageModel(
        m, m.source_ids, m.target_ids, m.target_tokens,
        lambda ids: " ".join(m.target_tokens(ids)), description, source_tokens=m.source_tokens,
        generate=lambda ids, n: m.translate_ids(ids, n), baselines=m.baselines)


def generation_methods(spec: str) -> list[str]:
    """``"ig,left-ig"`` or ``"all"`` -> ``SequenceAttribution`` methods; the image commands'
    spelling (``left-ig``) and the library's (``left_ig``) both work. Raises ``UsageError``."""
    from ..methods.sequence import METHODS
    from ..registry import parse_methods

    return parse_methods(spec, METHODS, "with --generate / --target-text")


def explain_generation(prompt: str, model: str, generate: int | None, target: str | None,
                       methods: list[str], steps: int | str, out: Path, quiet: bool,
                       score: str = "logprob") -> tuple[str, list[Path]]:
    """Continue ``prompt`` greedily for ``generate`` tokens, or force ``target``, and explain
    every continuation token with each of ``methods`` (the continuation is generated once).
    Writes ``report.html`` and ``tokens.json`` per method to
    ``out/generation/<FOLDER>/<METHOD>/``, the folder named after the prompt and the
    continuation asked for (``files.text_folder``: another prompt never replaces them).
    ``methods``: entries with their options (``left-ig:saturation=0.8``); ``score``: a name
    in ``scores.SCORES``.
    Returns the terminal text and the reports. Raises ``UsageError``. Cost: loading the model
    (training it once, 15-45 s, for tiny-lm), then ``SequenceAttribution``'s per method."""
    from ..methods.sequence import SequenceAttribution
    from ..methods.sequence.scores import SCORES
    from ..methods.sequence.tokens import context_room
    from ..registry import parse_entry

    if not prompt:
        raise UsageError("--text: empty prompt")
    if score not in SCORES:
        raise UsageError(f"--score: one of {', '.join(SCORES)}, got {score!r}")
    lm = load_language_model(model, progress=not quiet)
    try:
        ids = torch.tensor([lm.prompt(prompt)])
        forced = None if target is None else torch.tensor([lm.continuation(target)])
    except ValueError as e:
        raise UsageError(f"--text / --target-text: {e}") from None
    if ids.shape[1] == 0:
        raise UsageError("--text: no tokens")
    if forced is not None and forced.shape[1] == 0:
        raise UsageError("--target-text: empty")
    if forced is None:
        if generate is None:
            raise UsageError("--generate, --target-text: give one (generate, or force a text)")
        room = context_room(lm.model, ids.shape[1])
        if room is not None and generate > room:  # before any work, naming the flag
            raise UsageError(f"--generate: at most {room} tokens fit after this prompt of "
                             f"{ids.shape[1]} in the model's context; got {generate}")
        if lm.generate is not None:  # the model's own decoding, to its end
            forced = torch.tensor([lm.generate(ids[0].tolist(), generate)])
            if forced.shape[1] == 0:
                raise UsageError("--text: the model's translation is empty")
    folder = out / "generation" / text_folder(prompt, f"+{generate}" if target is None
                                              else target)
    texts, reports = [], []
    for method in methods:
        start = time.perf_counter()
        name, options = parse_entry(method)
        kw: dict = {"steps": steps, "progress": not quiet}
        sa = SequenceAttribution(lm.model, method=name, **options)
        if lm.baselines is not None:
            kw["baselines"] = lm.baselines(ids.shape[1], (forced if forced is not None
                                                          else ids).shape[1])
        r = sa.attribute(ids, forced, None if forced is not None else generate,
                         score=score, **kw)
        seconds = time.perf_counter() - start
        text, report = _write(lm, sa, r, prompt, method, target is None, seconds,
                              folder / method, quiet)
        forced = r.target_ids  # the same continuation for the next method, not generated again
        texts.append(text)
        reports.append(report)
    return "\n".join(texts), reports


def _write(lm: LanguageModel, sa, r, prompt: str, method: str, generated: bool,
           seconds: float, directory: Path, quiet: bool) -> tuple[str, Path]:
    """One method's terminal text; ``tokens.json``, ``heatmap.png`` (targets x positions)
    and ``report.html`` in ``directory``."""
    shift = int(sa.seq2seq)  # an encoder-decoder's targets also see the decoder's start token
    ids, n_prompt = r.input_ids[0].tolist(), r.info["prompt_length"]
    words = (lm.source_tokens(ids[:n_prompt]) + lm.tokens(ids[n_prompt:])
             if lm.source_tokens is not None else lm.tokens(ids))
    tokens = [repr(t)[1:-1] for t in words]
    targets = [repr(t)[1:-1] for t in lm.tokens(r.target_ids[0].tolist())]
    scores = r.scores[0].double().numpy()
    relative = (r.delta[0].abs() / r.info["output_delta"][0].abs().clamp_min(1e-12)).tolist()
    continuation = lm.decode(r.target_ids[0].tolist())
    head = (f"{prompt!r} -> {continuation!r}: {method}, log-probability of each token, "
            f"max completeness gap {max(relative):.2%}, {seconds:.1f} s")
    if sys.stdout.isatty() and not quiet:
        body = viz.sequence_terminal(tokens, targets, scores, shift)
    else:
        body = "\n".join(_top_sources(tokens, targets, scores, shift))
    make_dirs(directory)
    write_file(directory / "tokens.json", json.dumps({
        "prompt": prompt, "continuation": continuation, "method": method, "tokens": tokens,
        "targets": targets, "target_ids": r.target_ids[0].tolist(),
        "encoder_decoder": sa.seq2seq, "scores": scores.tolist(), "delta": r.delta[0].tolist(),
        "relative_delta": relative, "output_delta": r.info["output_delta"][0].tolist()},
        indent=2) + "\n")
    heatmap = viz.figure_png(viz.sequence_figure(tokens, targets, scores, shift))
    write_file(directory / "heatmap.png", heatmap)
    report = viz.Report(
        title="pathattr: a language model's continuation",
        facts=[("model", lm.description), ("prompt", prompt),
               ("continuation", continuation),
               ("target", "generated greedily" if generated else "forced"),
               ("score", f"{r.info['score']} of each target token"), ("method", method),
               ("completeness", f"largest gap |δ| = {float(r.delta[0].abs().max()):.3g} "
                                f"({max(relative):.2%} of the target's change), {seconds:.1f} s")],
        sections=[(f"Attributions: {method}, target x position", heatmap, ())],
        tokens_html=viz.sequence_html(tokens, targets, scores, shift),
        notes=["Each row: the positions a target token can see, red where they raise its "
               "log-probability, blue where they lower it (relative to padding everywhere)."
               + (" An encoder-decoder's positions are the encoder's tokens, then the "
                  "decoder's start token and the targets before the last." if shift else "")])
    return head + "\n" + body, report.write(directory / "report.html")


def _top_sources(tokens: list[str], targets: list[str], scores, shift: int, top: int = 3
                 ) -> list[str]:
    lines = []
    for t, (target, row) in enumerate(zip(targets, scores)):
        seen = len(tokens) - len(targets) + t + shift
        order = sorted(range(seen), key=lambda j: -abs(row[j]))[:top]
        parts = ", ".join(f"{tokens[j]!r}@{j} {row[j]:+.3f}" for j in order)
        lines.append(f"  {target!r:>6}  <- {parts}")
    return lines
