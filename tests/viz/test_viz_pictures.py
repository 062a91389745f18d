"""Pictures from pathattr.viz: right sizes, right ranges, usable without pyplot."""

import io
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from pathattr import viz


def png_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as img:
        return img.size


@pytest.fixture
def image():
    return np.random.default_rng(0).random((30, 40, 3))


@pytest.fixture
def attr():
    a = torch.zeros(3, 30, 40)
    a[:, 5:10, 5:10] = 1.0
    a[:, 20:25, 30:35] = -2.0
    return a


def test_normalize_signed_and_absolute_ranges(attr):
    signed = viz.normalize(attr, signed=True, percentile=99)
    absolute = viz.normalize(attr, signed=False, percentile=99)
    assert signed.shape == (30, 40) and signed.min() == -1 and signed.max() > 0
    assert absolute.min() == 0 and absolute.max() == 1
    assert (viz.normalize(torch.zeros(30, 40)) == 0).all()


def test_percentile_clipping_keeps_detail_under_an_outlier():
    a = np.ones((10, 10))
    a[0, 0] = 1000.0
    assert viz.normalize(a, percentile=95)[5, 5] == 1.0     # the outlier is clipped
    assert viz.normalize(a, percentile=100)[5, 5] < 0.01    # without clipping it dominates


def test_overlay_and_heatmap_have_the_image_size(image, attr):
    for signed in (True, False):
        out = viz.overlay(image, attr, signed=signed)
        assert out.shape == (30, 40, 3) and out.dtype == np.uint8
        assert viz.heatmap(attr, signed=signed).shape == (30, 40, 3)
    assert png_size(viz.array_png(viz.overlay(image, attr))) == (40, 30)
    # Zero attribution shows the (greyed) photo, strong attribution is coloured.
    out = viz.overlay(image, attr).astype(int)
    assert abs(out[0, 0, 0] - out[0, 0, 2]) < 2
    assert out[7, 7, 0] > out[7, 7, 2] + 50 and out[22, 32, 2] > out[22, 32, 0] + 50


def test_overlay_rejects_mismatched_shapes(image):
    with pytest.raises(ValueError, match="image is 30x40 pixels but the attribution map is 10x10"):
        viz.overlay(image, np.zeros((3, 10, 10)))


def test_overlay_takes_a_channels_first_image_as_the_model_sees_it(image, attr):
    import torch

    from pathattr.zoo import preprocess, unpreprocess

    chw = unpreprocess(preprocess((image * 255).astype(np.uint8), crop=24))  # (3, 24, 24)
    assert chw.shape == (3, 24, 24)
    a = torch.randn(3, 24, 24)
    np.testing.assert_array_equal(viz.overlay(chw, a), viz.overlay(chw.permute(1, 2, 0), a))
    with pytest.raises(ValueError, match="image must be"):
        viz.overlay(np.zeros((4, 5, 6)), np.zeros((5, 6)))


def test_method_grid_size(image, attr):
    fig = viz.method_grid(image, {"ig": attr, "deeplift": -attr, "x": attr}, {"ig": "δ = 0.1"},
                          tile=2.0, columns=2)
    # 2 columns, 2 rows of 2.35 in, and 0.6 in for the colour bar under them
    assert png_size(viz.figure_png(fig)) == (400, 2 * 235 + 60)
    (bar,) = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert [t.get_text() for t in bar.get_xticklabels()] == ["lowers the target", "0",
                                                             "raises it"]


def test_token_text_stays_readable_on_the_darkest_colours():
    from pathattr.viz.text import colours

    for v in (-1.0, 1.0):
        (r, g, b), text = colours(v)
        assert text == (255, 255, 255) and 0.299 * r + 0.587 * g + 0.114 * b < 128
    assert colours(0.0)[1] == (0, 0, 0)
    page = viz.sequence_html(["a", "b", "c"], ["b", "c"], [[-1.2, 0, 0], [-0.0005, 0.3, 0]])
    assert "full red = +1.2" in page  # one scale: -0.0005 is near white, not full blue
    faint = page.split("&rarr; c")[1]
    assert "color: rgb(0,0,0)" in faint and "rgb(5," not in faint


def test_curves_figure_size():
    f = torch.linspace(0, 1, 5)
    c = SimpleNamespace(fractions=f, scores=1 - f, auc=torch.tensor(0.5))
    curves = {"ig": {"insertion": c, "deletion": c}, "dl": {"deletion": c},
              "ig (inverse)": {"insertion": c}, "random ranking": {"insertion": c}}
    fig = viz.curves_figure(curves, panel=(2.0, 1.5))
    # small multiples: a row per kind, a panel per method (not per control)
    assert png_size(viz.figure_png(fig)) == (400, 330)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles[0] == "ig: 0.500\n(rand 0.500, inv 0.500)" and len(titles) == 4
    assert len(fig.axes[0].lines) == 3 and len(fig.axes[1].lines) == 1  # dl: random only
    wide = viz.curves_figure({f"m{i}": {"deletion": c} for i in range(8)}, ["deletion"],
                             columns=4, panel=(2.0, 1.5))
    assert png_size(viz.figure_png(wide)) == (800, 330)  # 8 methods wrap into two rows


def test_neuron_bars_size():
    fig = viz.neuron_bars([3, 7, 1], {"Neuron IG": [1.0, -0.5, 0.2], "reset": [0, 0, 0]},
                          width=5, row_height=0.5)
    assert png_size(viz.figure_png(fig)) == (500, 250)


def test_tokens_html_escapes_and_colours():
    out = viz.tokens_html(["<b>", "cat"], [1.0, -0.5])
    assert "&lt;b&gt;" in out and "<b>" not in out
    assert out.count('class="tok"') == 2 and 'title="+1.0000"' in out
    with pytest.raises(ValueError, match="2 tokens but 1 scores"):
        viz.tokens_html(["a", "b"], [1.0])


def test_tokens_table_bars_point_by_sign():
    lines = viz.tokens_table(["up", "down", "zero"], [2.0, -1.0, 0.0], bar=10).splitlines()
    assert len(lines) == 4
    assert lines[1].endswith("|" + "#" * 10)
    assert lines[2].endswith("#" * 5 + "|")
    assert lines[3].endswith("|")


def _sequence():
    tokens = ["<b>", "cat", "sat", "on", "mat"]  # prompt of 3, targets "on", "mat"
    scores = np.array([[0.5, -0.2, 0.9, 0.0, 0.0],
                       [0.1, 0.3, -0.4, 0.7, 0.0]])
    return tokens, ["on", "mat"], scores


def test_sequence_heatmap_greys_what_a_target_cannot_see():
    tokens, targets, scores = _sequence()
    fig = viz.sequence_figure(tokens, targets, scores)
    shown = fig.axes[0].images[0].get_array()
    assert shown.shape == (2, 5)
    assert shown.mask.tolist() == [[False, False, False, True, True],
                                   [False, False, False, False, True]]
    assert float(shown[0, 2]) == 0.9 and fig.axes[0].images[0].norm.vmax == 0.9
    png = viz.figure_png(fig)
    assert Image.open(io.BytesIO(png)).size[0] > 100
    with pytest.raises(ValueError, match="expected \\(2, 5\\)"):
        viz.sequence_figure(tokens, targets, scores[:, :4])


def test_sequence_html_and_terminal_colour_each_target_row():
    tokens, targets, scores = _sequence()
    page = viz.sequence_html(tokens, targets, scores)
    assert page.count('class="target"') == 2 and "&lt;b&gt;" in page
    assert page.count('class="tok"') == 3 + 4  # each target sees the positions before it
    text = viz.sequence_terminal(tokens, targets, scores).splitlines()
    assert [line.split()[1] for line in text] == ["on", "mat"]
    assert text[0].count("\x1b[48;2;") == 3 and text[1].count("\x1b[48;2;") == 4
    # "sat" raises "on" most: the map's top colour; "cat" lowers it: blue above red
    from matplotlib import colormaps

    from pathattr.viz.heatmap import SIGNED_CMAP

    cells = [tuple(int(v) for v in c.split("m", 1)[0].split(";"))
             for c in text[0].split("\x1b[48;2;")[1:]]
    assert cells[2] == tuple(round(255 * c) for c in colormaps[SIGNED_CMAP](1.0)[:3])
    assert cells[1][2] > cells[1][0] and cells[0][0] > cells[0][2]
