"""The HTML report: self-contained, sections present only when given, text escaped."""

import base64
import re

import numpy as np

from pathattr import viz


def full_report() -> viz.Report:
    """A report with every section, from small synthetic pictures (no model needed)."""
    rng = np.random.default_rng(0)
    img = rng.random((32, 32, 3))
    attr = rng.standard_normal((3, 32, 32))
    png = viz.array_png(viz.overlay(img, attr))
    bars = viz.figure_png(viz.neuron_bars([1, 2], {"Neuron IG": [1.0, -0.5]}))
    return viz.Report(
        title="t <&>", facts=[("model", "m")], input_png=viz.array_png(img),
        prediction=viz.Table(("class", "p"), [(1, "0.9")]),
        methods=[viz.MethodPanel("ig", png, 0.1, 0.01, 2.0,
                                 values=viz.report.map_cells(attr.sum(0))),
                 viz.MethodPanel("agi", error="ValueError: <bad>")],
        curves_png=bars, curves=viz.Table(("method", "auc"), [("ig", "0.5")]),
        neurons_png=bars, neurons=viz.Table(("rank", "channel"), [(1, 7)]),
        tokens_html=viz.tokens_html(["a", "cat"], [0.2, -0.1]) + viz.sequence_html(
            ["a", "cat", "sat"], ["cat", "sat"], [[0.2, 0, 0], [0.1, -0.3, 0]]),
        notes=["a note"])


def test_report_is_self_contained_with_every_section(tmp_path):
    page = full_report().write(tmp_path / "r.html").read_text()
    for heading in ("Input and prediction", "Attributions", "Insertion and deletion",
                    "Top neurons", "Tokens"):
        assert f"<h2>{heading}</h2>" in page
    # one inline script, nothing fetched: the file works offline
    assert page.count("<script") == 1 and "<script src" not in page
    assert "http" not in page.replace("http-equiv", "")
    srcs = re.findall(r'src="([^"]+)"', page)
    assert len(srcs) == 4 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert base64.b64decode(srcs[0].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "t &lt;&amp;&gt;" in page and "&lt;bad&gt;" in page
    assert "2.0 s · δ = +0.1 (1.0 %)" in page
    # a colour scale for the maps, from the diverging map's own ends
    (gradient,) = re.findall(r"linear-gradient\(to right, ([^)]*\)[^\"]*)\"", page)
    assert gradient.startswith("rgb(5,48,97)") and gradient.endswith("rgb(103,0,31))")
    assert "lowers the target" in page and "raises it" in page


def test_empty_sections_are_left_out():
    page = viz.Report(title="only").html()
    assert "<h2>" not in page and "<title>only</title>" in page


def test_table_text_aligns_columns():
    text = viz.Table(("method", "delta"), [("ig", "+0.1"), ("deeplift", "-2")]).text()
    assert text.splitlines() == ["method    delta", "ig         +0.1", "deeplift     -2"]


def test_each_card_says_what_its_gap_means():
    from pathattr import registry

    large = viz.MethodPanel("ig", delta=2.13, relative=0.232, seconds=1.0)
    assert "δ = +2.13 (23.2 %)" in large.caption() and "more steps" in large.caption()
    assert "more steps" not in viz.MethodPanel("ig", delta=0.01, relative=0.001).caption()
    assert large.caption(short=True) == "1.0 s · δ = +2.13 (23.2 %)"
    agi = viz.MethodPanel("agi", delta=-813.0, relative=0.9, gap=registry.METHODS["agi"].gap)
    assert "not complete" in agi.caption() and "more steps" not in agi.caption()
    none = viz.MethodPanel("saliency", seconds=0.1, gap=registry.METHODS["saliency"].gap)
    assert none.caption() == "0.1 s · no completeness: the gradient at the input alone"
    # every method whose result has no delta says so on its card
    for name in ("saliency", "input-x-gradient", "smoothgrad"):
        assert registry.METHODS[name].gap.startswith("no completeness")


def test_map_cells_average_blocks_and_the_values_travel_as_float32():
    m = np.arange(16.0).reshape(4, 4)
    np.testing.assert_array_equal(viz.report.map_cells(m, cells=2),
                                  [[2.5, 4.5], [10.5, 12.5]])
    assert viz.report.map_cells(np.ones((5, 3)), cells=2).shape == (2, 1)  # ragged edge
    page = full_report().html()
    (data,) = re.findall(r'data-map="([^"]+)"', page)
    sent = np.frombuffer(base64.b64decode(data), dtype="<f4").reshape(32, 32)
    rng = np.random.default_rng(0)
    rng.random((32, 32, 3))
    np.testing.assert_allclose(sent, rng.standard_normal((3, 32, 32)).sum(0), rtol=1e-6)
