"""DeepLIFT (Shrikumar et al. 2017), Rescale and RevealCancel, to inputs and to layers.

One concept per module, imported in this order (no cycle): ``ops`` (which torch operation is
treated how), ``multipliers`` (the rules' arithmetic), ``composite`` (softmax, norms,
attention and recurrent kernels as a whole), ``mode`` (``DeepLiftMode``, the
``TorchFunctionMode`` that applies them), ``method`` (the ``DeepLift`` and ``LayerDeepLift``
classes).
"""

from .method import DeepLift, LayerDeepLift, layer_pass, on_layers, runs_in_half
from .ops import NoDeepLiftRule

__all__ = ["DeepLift", "LayerDeepLift", "NoDeepLiftRule", "layer_pass", "on_layers",
           "runs_in_half"]
