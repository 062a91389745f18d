"""Rich displays for Jupyter: what ``Attribution``, ``SequenceResult`` and ``Evaluation`` show
instead of a dataclass dump (their ``_repr_html_``), the same views as the reports, each a
self-contained HTML fragment (embedded PNGs, no script)."""

from __future__ import annotations

import html
from typing import Any

import torch

from .heatmap import heatmap
from .png import array_png, figure_png
from .report import Table, data_uri, scale_html

#: At most this many examples get a row (and a picture) in a display.
SHOWN = 4


def _num(v: float) -> str:
    return f"{v:+.3g}"


def _picture(a: torch.Tensor) -> str:
    """An ``<img>`` of one example's map when it is an image (``(C, H, W)`` or ``(H, W)``)."""
    if a.dim() not in (2, 3) or min(a.shape[-2:]) < 4:
        return ""
    return (f'<img style="width: 120px; image-rendering: pixelated" alt="map" '
            f'src="{data_uri(array_png(heatmap(a.detach().float().cpu())))}">')


def attribution_html(r: Any) -> str:
    """``Attribution``: the shape, each example's gap (absolute and relative) and, for image
    maps, a heatmap per example; the path points used; ``info``'s scalar facts."""
    a = r.attributions
    parts = a if isinstance(a, tuple) else (a,)
    shape = ", ".join(f"{tuple(t.shape)} {str(t.dtype).replace('torch.', '')}" for t in parts)
    rows = []
    rel = None
    if r.delta is not None and "output_delta" in r.info:
        rel = r.relative_delta().detach().flatten().tolist()
    for i in range(min(len(parts[0]), SHOWN)):
        gap = "-" if r.delta is None else _num(float(r.delta.flatten()[i]))
        share = "-" if rel is None else f"{rel[i]:.2%}"
        rows.append((i, gap, share, _picture(parts[0][i]) if len(parts) == 1 else ""))
    points = "-" if r.alphas is None else (
        f"{len(r.alphas)}" if isinstance(r.alphas, torch.Tensor) and r.alphas.dim() == 1
        else "per example")
    facts = [("attributions", shape), ("path points", points)] + [
        (k, str(v)) for k, v in r.info.items() if isinstance(v, (int, float, str, bool))]
    body = "".join(f"<tr><td>{i}</td><td>{g}</td><td>{s}</td><td>{p}</td></tr>"
                   for i, g, s, p in rows)
    more = f"<p>... {len(parts[0]) - SHOWN} more examples</p>" if len(parts[0]) > SHOWN else ""
    return (f"<div><b>Attribution</b>{Table((), facts, 'facts').html()}"
            f"<table><tr><th>example</th><th>&delta;</th><th>|&delta;| / |&Delta;F|</th>"
            f"<th>map</th></tr>{body}</table>{more}"
            f"{scale_html() if any(p for *_, p in rows) else ''}</div>")


def sequence_html_view(r: Any) -> str:
    """``SequenceResult``: per example (up to ``SHOWN``), the target x position matrix (ids
    as labels; ``viz.sequence_html`` with a tokenizer's strings shows words) and the
    largest gap."""
    from .sequence import sequence_figure

    out = [f"<div><b>SequenceResult</b> {html.escape(str(r.info.get('method', '')))}, "
           f"{tuple(r.target_ids.shape)} targets over {tuple(r.input_ids.shape)} positions"]
    for b in range(min(len(r.input_ids), SHOWN)):
        tokens = [str(int(t)) for t in r.input_ids[b]]
        targets = [str(int(t)) for t in r.target_ids[b]]
        png = figure_png(sequence_figure(tokens, targets, r.scores[b].double().cpu().numpy(),
                                         int(bool(r.info.get("encoder_decoder")))))
        gap = float(r.delta[b].abs().max()) if r.delta.numel() else 0.0
        out.append(f"<p>example {b}: largest |&delta;| {gap:.3g}</p>"
                   f'<img style="max-width: 100%" alt="example {b}" src="{data_uri(png)}">')
    return "".join(out) + "</div>"


def evaluation_html(ev: Any) -> str:
    """``Evaluation``: the AUC table (mean [95 % interval]) and the paired comparisons."""
    auc, comp = ev.tables()
    n = len(ev.inputs)
    return (f"<div><b>Evaluation</b> of {len(ev.methods)} methods on {n} inputs"
            f"{auc.html()}{comp.html() if n > 1 else ''}</div>")


