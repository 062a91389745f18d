"""One self-contained HTML report: every image is an embedded base64 PNG, the one script is
inline (method toggles, the value under the pointer) and there is no external resource, so
the file opens offline and can be mailed or archived as is."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..files import write_file

CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; max-width: 1200px; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 8px 0; }
td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
td:first-child, th:first-child, .facts td { text-align: left; }
.grid { display: flex; flex-wrap: wrap; gap: 12px; }
figure { margin: 0; width: 240px; } figure img { width: 240px; image-rendering: pixelated; }
figcaption { font-size: 12px; } .failed { color: #b00; } .wide { max-width: 100%; }
.tok { padding: 1px 3px; border-radius: 3px; line-height: 2; } .note { color: #666; }
.scale { display: flex; align-items: center; gap: 8px; font-size: 12px; color: #444; }
.target > b { cursor: pointer; } .focus .target:not(.chosen) { display: none; }
.value { color: #333; font-variant-numeric: tabular-nums; } .toggles label { margin-right: 8px; }
.scale span.bar { width: 240px; height: 12px; border: 1px solid #ccc; }
"""


#: Most cells per side of the map a report embeds for hover values.
MAP_CELLS = 56

#: The report's one script (inline: the file stays self-contained and works offline): a
#: checkbox per method hides or shows its card; over a map, the attribution under the pointer
#: is shown in the card. With ``#selftest`` in the address it exercises both and writes what
#: it saw into ``body[data-selftest]`` (the browser test reads it from the DOM).
SCRIPT = """
(function () {
  function decode(b64) {
    var raw = atob(b64), bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    return new Float32Array(bytes.buffer);
  }
  document.querySelectorAll('figure[data-map]').forEach(function (fig) {
    var values = decode(fig.dataset.map), h = +fig.dataset.h, w = +fig.dataset.w;
    var img = fig.querySelector('img'), out = fig.querySelector('.value');
    img.addEventListener('mousemove', function (e) {
      var r = img.getBoundingClientRect();
      var col = Math.min(w - 1, Math.floor((e.clientX - r.left) / r.width * w));
      var row = Math.min(h - 1, Math.floor((e.clientY - r.top) / r.height * h));
      out.textContent = 'here: ' + values[row * w + col].toPrecision(3);
    });
  });
  document.querySelectorAll('.target > b').forEach(function (head) {
    head.addEventListener('click', function () {  // the prompt coloured by this target alone
      var row = head.parentNode, on = !row.classList.contains('chosen');
      document.querySelectorAll('.target').forEach(function (r) { r.classList.remove('chosen'); });
      row.classList.toggle('chosen', on);
      document.body.classList.toggle('focus', on);
    });
  });
  document.querySelectorAll('input.toggle').forEach(function (box) {
    box.addEventListener('change', function () {
      var card = document.getElementById(box.dataset.card);
      card.style.display = box.checked ? '' : 'none';
    });
  });
  if (location.hash === '#selftest') {
    var fig = document.querySelector('figure[data-map]'), seen = [];
    if (fig) {
      var img = fig.querySelector('img'), r = img.getBoundingClientRect();
      img.dispatchEvent(new MouseEvent('mousemove', {clientX: r.left + 1, clientY: r.top + 1}));
      seen.push(fig.querySelector('.value').textContent);
    }
    var box = document.querySelector('input.toggle');
    if (box) {
      box.checked = false;
      box.dispatchEvent(new Event('change'));
      seen.push('hidden:' + document.getElementById(box.dataset.card).style.display);
    }
    var head = document.querySelector('.target > b');
    if (head) {
      head.click();
      var shown = Array.prototype.filter.call(document.querySelectorAll('.target'),
        function (r) { return getComputedStyle(r).display !== 'none'; });
      seen.push('targets shown:' + shown.length);
    }
    document.body.dataset.selftest = seen.join(';');
  }
})();
"""


def map_cells(m: np.ndarray, cells: int = MAP_CELLS) -> np.ndarray:
    """A 2-D map block-averaged so that neither side exceeds ``cells`` (float32)."""
    m = np.asarray(m, dtype=np.float64)
    f = max(1, -(-max(m.shape) // cells))
    h, w = -(-m.shape[0] // f), -(-m.shape[1] // f)
    padded = np.full((h * f, w * f), np.nan)
    padded[:m.shape[0], :m.shape[1]] = m
    return np.nanmean(padded.reshape(h, f, w, f), axis=(1, 3)).astype(np.float32)


def scale_html(signed: bool = True) -> str:
    """A colour-scale legend for the maps: the diverging map from "lowers" to "raises" (or
    the absolute map from none to most), drawn with a CSS gradient (no picture, no script)."""
    from matplotlib import colormaps

    from .heatmap import ABSOLUTE_CMAP, SIGNED_CMAP

    cmap = colormaps[SIGNED_CMAP if signed else ABSOLUTE_CMAP]
    stops = ", ".join("rgb({},{},{})".format(*(round(255 * c) for c in cmap(i / 8)[:3]))
                      for i in range(9))
    low, high = ("lowers the target", "raises it") if signed else ("none", "most")
    return (f'<div class="scale">{low}<span class="bar" style="background: '
            f'linear-gradient(to right, {stops})"></span>{high}</div>')


def data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` for embedding a PNG."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


@dataclass
class MethodPanel:
    """One method's heatmap and evidence: ``delta`` the completeness gap (None if the method has
    none), ``relative`` that gap over ``|F(x) - F(x')|``, ``error`` set if the method failed."""

    name: str
    png: bytes | None = None
    delta: float | None = None
    relative: float | None = None
    seconds: float | None = None
    error: str | None = None
    #: The map behind the picture, ``(h, w)`` (block-averaged to at most ``MAP_CELLS`` a
    #: side): the report shows its value under the pointer.
    values: np.ndarray | None = None
    #: What ``delta`` means when it is not a complete method's quadrature error
    #: (``registry.MethodInfo.gap``), said after it, or instead of it when there is none.
    gap: str | None = None

    #: Above this relative gap a complete method's card says how to close it.
    LARGE = 0.05

    def caption(self, short: bool = False) -> str:
        """Plain text: ``failed: ...``, or time and gap like ``3.2 s · δ = +0.12 (1.3 %)``,
        with what the gap means (not with ``short``, for picture titles): a complete
        method's large gap is its quadrature error, and the card says what closes it; other
        methods say what their δ compares."""
        if self.error:
            return f"failed: {self.error}"
        parts = [f"{self.seconds:.1f} s"] if self.seconds is not None else []
        if self.delta is not None:
            rel = f" ({100 * self.relative:.1f} %)" if self.relative is not None else ""
            parts.append(f"δ = {self.delta:+.3g}{rel}")
            if short:
                return " · ".join(parts)
            if self.gap is None and self.relative is not None and self.relative > self.LARGE:
                parts.append("quadrature error: more steps (or steps='auto') close it")
        if self.gap is not None and not short:
            parts.append(self.gap)
        return " · ".join(parts)


@dataclass
class Table:
    """A table (no header row if ``headers`` is empty); cells are shown as escaped text, so
    numbers are formatted by the caller."""

    headers: Sequence[str]
    rows: Sequence[Sequence[object]]
    css_class: str = ""

    def html(self) -> str:
        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in self.headers)
        head = f"<tr>{head}</tr>" if head else ""
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                       for row in self.rows)
        cls = f' class="{self.css_class}"' if self.css_class else ""
        return f"<table{cls}>{head}{body}</table>"

    def text(self) -> str:
        """The table for a terminal: columns padded, the first left-aligned, others right."""
        rows = [[str(c) for c in r] for r in ([self.headers] if self.headers else []) + [
            list(r) for r in self.rows]]
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))] if rows else []
        return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                   for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()
                         for r in rows)


@dataclass
class Report:
    """What a report shows; every section but the title is optional and left out when empty."""

    title: str
    facts: Sequence[tuple[str, str]] = ()            # model, target, steps, ... as key/value
    input_png: bytes | None = None
    prediction: Table | None = None
    methods: list[MethodPanel] = field(default_factory=list)
    curves_png: bytes | None = None
    curves: Table | None = None
    neurons_png: bytes | None = None
    neurons: Table | None = None
    tokens_html: str | None = None
    #: further sections: (title, picture or None, tables)
    sections: Sequence[tuple[str, bytes | None, Sequence[Table]]] = ()
    notes: Sequence[str] = ()
    #: What the attribution pictures' colours mean (HTML).
    methods_note: str = ("Red raises the target output, blue lowers it (each map scaled to "
                         "its 99th percentile of |attribution|). &delta; is the completeness "
                         "gap: sum of attributions minus F(x) &minus; F(baseline).")

    def html(self) -> str:
        """The whole page as a string. Cost: base64 of every embedded PNG."""
        out = [f"<h1>{html.escape(self.title)}</h1>"]
        if self.facts:
            out.append(Table((), self.facts, "facts").html())
        if self.input_png or self.prediction:
            out.append("<h2>Input and prediction</h2><div class=\"grid\">")
            if self.input_png:
                out.append(f'<figure><img alt="input" src="{data_uri(self.input_png)}"></figure>')
            if self.prediction:
                out.append(f"<div>{self.prediction.html()}</div>")
            out.append("</div>")
        if self.methods:
            toggles = "".join(
                f'<label><input type="checkbox" class="toggle" data-card="card-{i}" checked> '
                f"{html.escape(m.name)}</label> " for i, m in enumerate(self.methods))
            out.append(f"<h2>Attributions</h2><p class=\"note\">{self.methods_note}</p>"
                       f"{scale_html()}<p class=\"toggles\">show: {toggles}</p>"
                       f"<div class=\"grid\">")
            for i, m in enumerate(self.methods):
                img = f'<img alt="{html.escape(m.name)}" src="{data_uri(m.png)}">' if m.png else ""
                cls = ' class="failed"' if m.error else ""
                data = ""
                if m.values is not None:
                    v = np.ascontiguousarray(m.values, dtype="<f4")
                    data = (f' data-h="{v.shape[0]}" data-w="{v.shape[1]}" data-map="'
                            f'{base64.b64encode(v.tobytes()).decode("ascii")}"')
                out.append(f'<figure id="card-{i}"{data}>{img}<figcaption><b>'
                           f"{html.escape(m.name)}</b><br><span{cls}>"
                           f"{html.escape(m.caption())}</span><br>"
                           f'<span class="value"></span></figcaption></figure>')
            out.append("</div>")
        if self.curves_png is not None or self.curves is not None:
            _section(out, "Insertion and deletion", self.curves_png, self.curves)
        if self.neurons_png is not None or self.neurons is not None:
            _section(out, "Top neurons", self.neurons_png, self.neurons)
        if self.tokens_html:
            out.append("<h2>Tokens</h2>" + self.tokens_html)
        for title, png, tables in self.sections:
            _section(out, title, png, None)
            out.extend(t.html() for t in tables)
        out.extend(f'<p class="note">{html.escape(n)}</p>' for n in self.notes)
        return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<title>{html.escape(self.title)}</title><style>{CSS}</style></head><body>\n"
                + "\n".join(out) + f"\n<script>{SCRIPT}</script>\n</body></html>\n")

    def write(self, path: str | Path) -> Path:
        """Write the page (UTF-8) and return its path."""
        return write_file(path, self.html())


def _section(out: list[str], title: str, png: bytes | None, table: Table | None) -> None:
    out.append(f"<h2>{html.escape(title)}</h2>")
    if png is not None:
        out.append(f'<img class="wide" alt="{html.escape(title)}" src="{data_uri(png)}">')
    if table is not None:
        out.append(table.html())
