"""pathattr: path-integrated attribution for PyTorch networks, to inputs and to neurons.

Names load on first use (PEP 562), so ``import pathattr`` and the ``pathattr`` command start
without importing torch until a method is touched.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from .registry import classes as _classes

_NAMES = {
    **_classes(),  # every method class, from the one registry
    "Attribution": "pathattr.result",
    "PathEngine": "pathattr.engine",
    "explain": "pathattr.shared_pass",
    "SequenceAttribution": "pathattr.methods.sequence",
    "mlp_neurons": "pathattr.methods.sequence",
    "register_score": "pathattr.methods.sequence",
    "shared": "pathattr.forward",
    "per_example": "pathattr.forward",
    "run": "pathattr.runs",
    "summarize": "pathattr.runs",
}
_MODULES = ("baselines", "circuits", "errors", "quadrature", "metrics", "registry", "zoo", "viz")

__all__ = sorted([*_NAMES, *_MODULES])


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        value = getattr(importlib.import_module(_NAMES[name]), name)
    elif name in _MODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'pathattr' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # for type checkers and IDEs: the eager imports
    from . import baselines, metrics, quadrature, viz, zoo  # noqa: F401
    from .engine import PathEngine  # noqa: F401
    from .forward import per_example, shared  # noqa: F401
    from .methods.agi import AdversarialGradientIntegration  # noqa: F401
    from .methods.blur_ig import BlurIntegratedGradients  # noqa: F401
    from .methods.conductance import LayerConductance, NeuronConductance  # noqa: F401
    from .methods.deeplift import DeepLift, LayerDeepLift  # noqa: F401
    from .methods.expected_gradients import ExpectedGradients  # noqa: F401
    from .methods.gradient import InputXGradient, Saliency  # noqa: F401
    from .methods.guided_ig import GuidedIntegratedGradients  # noqa: F401
    from .methods.idg import IntegratedDecisionGradients  # noqa: F401
    from .methods.idgi import IDGI  # noqa: F401
    from .methods.integrated_gradients import (  # noqa: F401
        IntegratedGradients,
        LayerIntegratedGradients,
    )
    from .methods.left_ig import LeftIntegratedGradients  # noqa: F401
    from .methods.sequence import (  # noqa: F401
        SequenceAttribution,
        mlp_neurons,
        register_score,
    )
    from .methods.smoothgrad import SmoothGrad  # noqa: F401
    from .result import Attribution  # noqa: F401
    from .runs import run, summarize  # noqa: F401
    from .shared_pass import explain  # noqa: F401
