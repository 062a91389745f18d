"""Results as JSON: tensors and numpy values turned into plain Python values."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch


def jsonable(v: object) -> object:
    """Tensors and numpy values as (nested) lists and Python scalars; NaN/inf as strings."""
    if isinstance(v, torch.Tensor):
        v = v.detach().cpu().numpy()
    if isinstance(v, np.ndarray):
        return jsonable(v.tolist())
    if isinstance(v, Mapping):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, (np.floating, float)):
        return float(v) if math.isfinite(v) else str(float(v))
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    return v
