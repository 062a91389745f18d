"""Faithfulness metrics: insertion / deletion, neuron ablation, completeness gap."""

from .ablation import neuron_ablation, random_scores
from .completeness import completeness
from .curve import Curve
from .perturbation import deletion, insertion

__all__ = ["Curve", "completeness", "deletion", "insertion", "neuron_ablation", "random_scores"]
