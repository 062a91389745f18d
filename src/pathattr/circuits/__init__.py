"""Circuits: which heads, MLPs and neurons carry a behaviour, from a clean and a corrupted
run — activation patching (``patch``), and its path-integrated and first-order estimates
(``attribute``: total conductance, EAP-IG, AtP, IG on activations), on Hugging Face models,
TransformerLens ``HookedTransformer`` and nnsight wrappers of either."""

from .attribution import METHODS, CircuitResult, attribute, components, patch
from .metrics import logit_diff, prob_diff

__all__ = ["METHODS", "CircuitResult", "attribute", "components", "logit_diff", "patch",
           "prob_diff"]
