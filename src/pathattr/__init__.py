"""pathattr: path-integrated attribution for PyTorch networks, to inputs and to neurons."""

from . import baselines, quadrature
from .engine import PathEngine
from .methods.gradient import InputXGradient, Saliency
from .methods.integrated_gradients import IntegratedGradients, LayerIntegratedGradients
from .result import Attribution

__version__ = "0.1.0"

__all__ = [
    "Attribution",
    "InputXGradient",
    "IntegratedGradients",
    "LayerIntegratedGradients",
    "PathEngine",
    "Saliency",
    "baselines",
    "quadrature",
]
