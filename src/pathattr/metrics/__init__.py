"""Faithfulness metrics: insertion / deletion, ROAD, neuron ablation, completeness gap, infidelity
and sensitivity-max, the model-randomisation check; bootstrap intervals and paired
comparisons over inputs."""

from .ablation import neuron_ablation, random_scores
from .completeness import completeness, convergence_delta
from .curve import Curve
from .perturbation import deletion, insertion
from .randomisation import RandomisationCurve, parameterised_layers, randomisation_check
from .road import impute, road
from .robustness import gaussian_perturbation, infidelity, sensitivity_max, uniform_perturbation
from .statistics import (
           Comparison,
           Interval,
           bootstrap,
           compare,
           detectable_effect,
           effect_size,
           holm,
           inputs_needed,
           rank_biserial,
)

__all__ = ["Comparison", "Curve", "Interval", "RandomisationCurve", "bootstrap", "compare",
           "detectable_effect", "effect_size", "holm", "inputs_needed", "rank_biserial",
           "completeness", "convergence_delta", "deletion", "gaussian_perturbation", "impute",
           "infidelity", "insertion", "neuron_ablation", "parameterised_layers",
           "random_scores", "randomisation_check", "road", "sensitivity_max",
           "uniform_perturbation"]
