"""The completeness gap of a path-method result, relative to the output change it explains."""

from __future__ import annotations

from torch import Tensor

from ..call import convergence_delta  # noqa: F401 -- public as a metric here
from ..result import Attribution


def completeness(result: Attribution) -> Tensor:
    """``|delta| / |F(x) - F(x')|`` per example, shape ``(B,)``: 0 means the attributions add up
    exactly to the output change. Cost: none beyond reading the result.
    """
    if not isinstance(result, Attribution):
        raise TypeError(f"result must be an Attribution, got {type(result).__name__}")
    if result.delta is None:
        raise ValueError("result has no completeness gap (delta is None): the method that made "
                         "it has no completeness property")
    if "output_delta" not in result.info:
        raise ValueError("result.info has no 'output_delta' (F(x) - F(x')), so the gap cannot "
                         "be made relative")
    return result.relative_delta()
