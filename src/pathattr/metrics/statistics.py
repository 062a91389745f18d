"""Statistics over a set of inputs: a metric's mean with a bootstrap interval, and paired
comparisons of two methods, so a table says "A beats B" only when the evidence does.

``compare`` works on the paired differences ``d_i = a_i - b_i`` (the same inputs under both
methods): their mean with a percentile-bootstrap interval, and the two-sided Wilcoxon
signed-rank p-value (``scipy.stats.wilcoxon``: exact for small samples without ties), with two
effect sizes (Cohen's ``d_z = mean(d) / sd(d)`` and the matched-pairs rank-biserial
correlation). ``holm`` adjusts a family of p-values for multiple comparisons;
``inputs_needed`` says how many inputs a comparison of effect ``d_z`` needs for a given power.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Interval:
    """A mean and its bootstrap interval at ``level`` over ``n`` values."""

    mean: float
    low: float
    high: float
    level: float
    n: int

    def __str__(self) -> str:
        return f"{self.mean:.4g} [{self.low:.4g}, {self.high:.4g}]"


@dataclass(frozen=True)
class Comparison:
    """Paired ``a - b``: the mean difference with its bootstrap interval, the Wilcoxon p-value,
    and ``verdict``: "a > b" or "a < b" when the interval excludes 0 *and* the rank test agrees
    at the same level (``p < 1 - level``), else "no difference". Both, because the percentile
    bootstrap is too narrow on a handful of inputs (its coverage falls short of the nominal
    level below about 10), where the exact rank test is not."""

    difference: Interval
    p_value: float
    #: Cohen's d_z of the paired differences (0 when all are 0; +-inf when they are equal and
    #: not 0) and the matched-pairs rank-biserial correlation, in [-1, 1].
    effect: float = 0.0
    rank_biserial: float = 0.0
    #: The p-value the verdict reads: ``p_value``, or its Holm adjustment in a family.
    adjusted_p: float | None = None

    @property
    def verdict(self) -> str:
        p = self.p_value if self.adjusted_p is None else self.adjusted_p
        if p >= 1 - self.difference.level:
            return "no difference"
        if self.difference.low > 0:
            return "a > b"
        if self.difference.high < 0:
            return "a < b"
        return "no difference"


def _values(v: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(getattr(v, "detach", lambda: v)(), dtype=np.float64).ravel()
    if a.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or inf values")
    return a


def bootstrap(values: Sequence[float] | np.ndarray, level: float = 0.95,
              n_resamples: int = 10_000, seed: int = 0) -> Interval:
    """The mean of ``values`` with a percentile-bootstrap interval (seeded). Cost:
    ``n_resamples`` means of ``len(values)`` draws."""
    v = _values(values, "values")
    from ..validate import check_number

    check_number(level, "level", 0, 1, low_open=True, high_open=True)
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, (n_resamples, v.size))].mean(1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return Interval(float(v.mean()), float(lo), float(hi), level, int(v.size))


def compare(values_a: Sequence[float] | np.ndarray, values_b: Sequence[float] | np.ndarray,
            level: float = 0.95, n_resamples: int = 10_000, seed: int = 0) -> Comparison:
    """Paired comparison of two methods' metric values on the same inputs (see the module
    docstring). Raises ``ValueError`` for unequal lengths. Cost: ``bootstrap`` plus a rank
    test."""
    from scipy.stats import wilcoxon

    a, b = _values(values_a, "values_a"), _values(values_b, "values_b")
    if a.shape != b.shape:
        raise ValueError(f"values_a and values_b must be paired (the same inputs): got "
                         f"{a.size} and {b.size} values")
    d = a - b
    test: Any = wilcoxon(a, b) if np.any(d) else None  # scipy leaves its result untyped
    p = 1.0 if test is None else float(test.pvalue)
    return Comparison(bootstrap(d, level, n_resamples, seed), p, effect_size(d),
                      rank_biserial(d))


def effect_size(d: np.ndarray) -> float:
    """Cohen's ``d_z``: the mean paired difference over its standard deviation (ddof 1)."""
    d = np.asarray(d, dtype=np.float64)
    sd = float(d.std(ddof=1)) if d.size > 1 else 0.0
    mean = float(d.mean())
    if sd > 0:
        return mean / sd
    return 0.0 if mean == 0 else float(np.copysign(np.inf, mean))


def rank_biserial(d: np.ndarray) -> float:
    """The matched-pairs rank-biserial correlation ``(R+ - R-) / (R+ + R-)`` over the nonzero
    differences ranked by magnitude (ties averaged): +1 when every difference is positive."""
    from scipy.stats import rankdata

    d = np.asarray(d, dtype=np.float64)
    d = d[d != 0]
    if d.size == 0:
        return 0.0
    r = rankdata(np.abs(d))
    return float((r[d > 0].sum() - r[d < 0].sum()) / r.sum())


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p-values (in their order): the k-th
    smallest is multiplied by ``m - k + 1``, made non-decreasing, capped at 1. Rejecting where
    the adjusted value is below ``alpha`` keeps the family-wise error rate at ``alpha``."""
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (m - k) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()


def inputs_needed(effect: float, level: float = 0.95, power: float = 0.8) -> float:
    """Inputs a two-sided paired comparison of effect ``d_z`` needs to be decided at
    ``level`` with ``power``: the normal approximation ``((z_{(1+level)/2} + z_power) /
    d_z)^2`` for the paired t-test, divided by the Wilcoxon test's asymptotic relative
    efficiency under normality (3 / pi), rounded up, and at least the fewest inputs whose exact
    Wilcoxon test can reach ``1 - level`` at all (6 at 95 %: ``2 / 2^n < 0.05``); ``inf`` for
    no effect."""
    from scipy.stats import norm

    fewest = float(np.floor(np.log2(2 / (1 - level))) + 1)
    if effect == 0 or np.isnan(effect):
        return float("inf")
    if np.isinf(effect):
        return fewest
    n = ((norm.ppf((1 + level) / 2) + norm.ppf(power)) / abs(effect)) ** 2 / (3 / np.pi)
    return float(max(fewest, np.ceil(n)))


def detectable_effect(n: int, level: float = 0.95, power: float = 0.8) -> float:
    """The smallest ``|d_z|`` that ``n`` paired inputs decide at ``level`` with ``power``:
    ``inputs_needed`` solved for the effect (same normal approximation)."""
    from scipy.stats import norm

    if n < 2:
        return float("inf")
    return float((norm.ppf((1 + level) / 2) + norm.ppf(power)) / np.sqrt(n * 3 / np.pi))
