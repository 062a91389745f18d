"""``pathattr explain --text PROMPT --generate N`` (or ``--target-text``): attribute each token
of a language model's continuation to the prompt and the tokens before it
(``SequenceAttribution``), with a heatmap, per-target colouring and ``tokens.json``."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from .. import viz
from . import UsageError

#: Language models ``--model`` may name with ``--generate`` / ``--target-text``.
LANGUAGE_MODELS = {"tiny-lm": "character-level GPT-2 trained on the Zen of Python (cached)"}
METHODS = ("ig", "deeplift", "input_x_gradient")


def explain_generation(prompt: str, model: str, generate: int | None, target: str | None,
                       method: str, steps: int, out: Path, quiet: bool) -> tuple[str, Path]:
    """Continue ``prompt`` greedily for ``generate`` tokens, or force ``target``, and explain
    every continuation token. Writes ``out/generation/report.html`` and ``tokens.json``.
    Returns the terminal text and the report path. Raises ``UsageError``. Cost: loading the
    model (training it once, ~25 s, for tiny-lm), then ``SequenceAttribution``'s."""
    from ..methods.sequence import SequenceAttribution
    from ..zoo.tinylm import tiny_lm

    if model not in LANGUAGE_MODELS:
        raise UsageError(f"--model: {model!r} is not a language model pathattr can load offline;"
                         f" with --generate / --target-text use: {', '.join(LANGUAGE_MODELS)}")
    if method not in METHODS:
        raise UsageError(f"--method: with --generate / --target-text one of "
                         f"{', '.join(METHODS)}, got {method!r}")
    if not prompt:
        raise UsageError("--text: empty prompt")
    tokenizer, lm = tiny_lm()
    try:
        ids = torch.tensor([tokenizer(prompt)])
        forced = None if target is None else torch.tensor([tokenizer(target)])
    except ValueError as e:
        raise UsageError(f"--text / --target-text: {e}") from None
    if forced is not None and forced.shape[1] == 0:
        raise UsageError("--target-text: empty")
    start = time.perf_counter()
    kw = {} if method != "ig" else {"steps": steps, "progress": not quiet}
    r = SequenceAttribution(lm, method=method).attribute(
        ids, forced, None if forced is not None else generate, score="logprob", **kw)
    seconds = time.perf_counter() - start
    tokens = [repr(t)[1:-1] for t in tokenizer.tokens(r.input_ids[0].tolist())]
    targets = tokens[ids.shape[1]:]
    scores = r.scores[0].double().numpy()
    relative = (r.delta[0].abs() / r.info["output_delta"][0].abs().clamp_min(1e-12)).tolist()
    continuation = tokenizer.decode(r.target_ids[0].tolist())
    head = (f"{prompt!r} -> {continuation!r}: {method}, log-probability of each token, "
            f"max completeness gap {max(relative):.2%}, {seconds:.1f} s")
    if sys.stdout.isatty() and not quiet:
        body = viz.sequence_terminal(tokens, targets, scores)
    else:
        body = "\n".join(_top_sources(tokens, targets, scores))
    directory = out / "generation"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tokens.json").write_text(json.dumps({
        "prompt": prompt, "continuation": continuation, "method": method, "tokens": tokens,
        "targets": targets, "scores": scores.tolist(), "delta": r.delta[0].tolist(),
        "relative_delta": relative, "output_delta": r.info["output_delta"][0].tolist()},
        indent=2) + "\n")
    matrix = viz.MethodPanel(f"{method}: target x position", viz.figure_png(
        viz.sequence_figure(tokens, targets, scores)),
        delta=float(r.delta[0].abs().max()), relative=max(relative), seconds=seconds)
    report = viz.Report(
        title="pathattr: a language model's continuation",
        facts=[("model", f"tiny-lm: {LANGUAGE_MODELS[model]}"), ("prompt", prompt),
               ("continuation", continuation),
               ("target", "generated greedily" if forced is None else "forced"),
               ("score", "log-probability of each target token"), ("method", method)],
        methods=[matrix], tokens_html=viz.sequence_html(tokens, targets, scores),
        notes=["Each row: the positions a target token can see, red where they raise its "
               "log-probability, blue where they lower it (relative to padding everywhere)."])
    return head + "\n" + body, report.write(directory / "report.html")


def _top_sources(tokens: list[str], targets: list[str], scores, top: int = 3) -> list[str]:
    lines = []
    for t, (target, row) in enumerate(zip(targets, scores)):
        seen = len(tokens) - len(targets) + t
        order = sorted(range(seen), key=lambda j: -abs(row[j]))[:top]
        parts = ", ".join(f"{tokens[j]!r}@{j} {row[j]:+.3f}" for j in order)
        lines.append(f"  {target!r:>6}  <- {parts}")
    return lines
