"""Faithfulness metrics: insertion / deletion, neuron ablation, completeness gap, infidelity
and sensitivity-max; bootstrap intervals and paired comparisons over inputs."""

from .ablation import neuron_ablation, random_scores
from .completeness import completeness
from .curve import Curve
from .perturbation import deletion, insertion
from .robustness import gaussian_perturbation, infidelity, sensitivity_max, uniform_perturbation
from .statistics import Comparison, Interval, bootstrap, compare

__all__ = ["Comparison", "Curve", "Interval", "bootstrap", "compare", "completeness",
           "deletion", "gaussian_perturbation", "infidelity", "insertion", "neuron_ablation",
           "random_scores", "sensitivity_max", "uniform_perturbation"]
