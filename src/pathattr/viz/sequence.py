"""A generated (or forced) continuation's attributions: the target-by-position matrix as a
heatmap, and the sequence coloured once per target token, as HTML and in the terminal."""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from .heatmap import SIGNED_CMAP
from .text import _scaled, colours, tokens_html

#: Whitespace drawn as a visible glyph, so a target that is a space is not an empty label.
GLYPHS = {" ": "␣", "\n": "⏎", "\t": "⇥", "\\n": "⏎", "\\t": "⇥"}


#: Families tried, in order, for glyphs DejaVu Sans lacks (a Chinese source sentence):
#: whichever is installed (Debian: fonts-wqy-microhei or fonts-noto-cjk).
CJK_FAMILIES = ("WenQuanYi Micro Hei", "Noto Sans CJK SC", "Noto Sans CJK JP", "Noto Sans SC",
                "Droid Sans Fallback", "AR PL UMing CN")


def label_fonts() -> list[str]:
    """The font families for token labels: DejaVu Sans, then the installed CJK fallbacks."""
    from matplotlib import font_manager

    installed = {f.name for f in font_manager.fontManager.ttflist}
    return ["DejaVu Sans", *(f for f in CJK_FAMILIES if f in installed)]


def visible(token: str) -> str:
    """``token`` with spaces, newlines and tabs (raw, or escaped as ``\\n``) drawn as
    ``␣ ⏎ ⇥``; an empty token is ``∅``."""
    for raw, glyph in GLYPHS.items():
        token = token.replace(raw, glyph)
    return token or "∅"


def _matrix(tokens: Sequence[str], targets: Sequence[str], scores: object) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != (len(targets), len(tokens)):
        raise ValueError(f"scores have shape {s.shape}, expected ({len(targets)}, "
                         f"{len(tokens)}): one row per target, one column per position")
    return s


def _seen(tokens: Sequence[str], targets: Sequence[str], t: int, shift: int) -> int:
    """How many positions target ``t`` can see: the prompt and the targets before it (and,
    with ``shift=1``, an encoder-decoder's start token)."""
    return len(tokens) - len(targets) + t + shift


def sequence_figure(tokens: Sequence[str], targets: Sequence[str], scores: object,
                    shift: int = 0, cell: float = 0.32) -> Figure:
    """The ``(T, L)`` matrix (one row per target token, one column per position of the
    sequence: ``SequenceResult.scores[i]``) on the diverging map, scaled by its largest
    magnitude; positions a target cannot see (at or after its own) are grey. ``shift``: 1 for
    an encoder-decoder (whose targets also see the decoder's start token). Cost: one figure."""
    s = _matrix(tokens, targets, scores)
    tokens, targets = [visible(t) for t in tokens], [visible(t) for t in targets]
    hidden = np.array([[j >= _seen(tokens, targets, t, shift) for j in range(len(tokens))]
                       for t in range(len(targets))], dtype=bool).reshape(s.shape)
    top = np.abs(s).max() if s.size else 1.0
    fig = Figure(figsize=(max(5.0, cell * len(tokens) + 2.5), max(2.5, cell * len(targets) + 2)),
                 dpi=130)
    ax = fig.add_subplot()
    cmap = colormaps[SIGNED_CMAP].with_extremes(bad="#dddddd")
    shown = np.ma.masked_where(hidden, s)
    image = ax.imshow(shown, cmap=cmap, vmin=-(top or 1.0), vmax=top or 1.0, aspect="auto")
    fonts = label_fonts()
    ax.set_xticks(range(len(tokens)), tokens, rotation=90, fontfamily=fonts)
    ax.set_yticks(range(len(targets)), targets, fontfamily=fonts)
    ax.set_xlabel("position (prompt, then the targets before each row's)")
    ax.set_ylabel("target token")
    fig.colorbar(image, ax=ax, fraction=0.04)
    fig.tight_layout()
    return fig


def sequence_html(tokens: Sequence[str], targets: Sequence[str], scores: object,
                  shift: int = 0) -> str:
    """An HTML fragment: per target token, the positions it can see coloured by their
    attribution to it, every row on one colour scale (the largest magnitude of the matrix,
    said above the rows), so a faint row looks faint."""
    s = _matrix(tokens, targets, scores)
    tokens, targets = [visible(t) for t in tokens], [visible(t) for t in targets]
    top = float(np.abs(s).max()) if s.size else 0.0
    rows = [f'<p class="note">One colour scale for every row: full red = {top:+.4g}, full '
            f"blue = {-top:+.4g} (hover a token for its score; click a target to see the "
            f"prompt coloured by it alone, again for all).</p>"]
    for t, (target, row) in enumerate(zip(targets, s)):
        seen = _seen(tokens, targets, t, shift)
        rows.append(f'<div class="target"><b>&rarr; {html.escape(target)}</b> '
                    f"{tokens_html(tokens[:seen], row[:seen], top)}</div>")
    return "\n".join(rows)


def sequence_terminal(tokens: Sequence[str], targets: Sequence[str], scores: object,
                      shift: int = 0) -> str:
    """The same per-target colouring for a terminal (one scale for all rows, as in
    ``sequence_html``): 24-bit ANSI background colours, one line per target token,
    ``-> target`` first."""
    s = _matrix(tokens, targets, scores)
    tokens, targets = [visible(t) for t in tokens], [visible(t) for t in targets]
    top = float(np.abs(s).max()) if s.size else 0.0
    lines = []
    for t, (target, row) in enumerate(zip(targets, s)):
        seen = _seen(tokens, targets, t, shift)
        cells = []
        for tok, v in zip(tokens[:seen], _scaled(row[:seen], top)):
            (r, g, b), (tr, tg, tb) = colours(v)
            cells.append(f"\x1b[48;2;{r};{g};{b}m\x1b[38;2;{tr};{tg};{tb}m{tok}\x1b[0m")
        lines.append(f"-> {target:<8} " + " ".join(cells))
    return "\n".join(lines)
