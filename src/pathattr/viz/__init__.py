"""Pictures of attributions (matplotlib, Agg; no pyplot state) and the HTML report."""

from .bars import neuron_bars
from .curves import KINDS, curves_figure
from .heatmap import attribution_map, heatmap, method_grid, normalize, overlay
from .png import array_png, figure_png
from .report import MethodPanel, Report, Table
from .sequence import sequence_figure, sequence_html, sequence_terminal
from .text import tokens_html, tokens_table

__all__ = [
    "KINDS", "MethodPanel", "Report", "Table", "array_png", "attribution_map", "curves_figure",
    "figure_png", "heatmap", "method_grid", "neuron_bars", "normalize", "overlay",
    "sequence_figure", "sequence_html", "sequence_terminal", "tokens_html", "tokens_table",
]
