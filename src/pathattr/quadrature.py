"""Quadrature rules on [0, 1] as (nodes, weights), and the cells a rule induces.

Nodes and weights are float64 numpy arrays; callers cast them to the model's dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np

RULES = ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre")


#: The most path points one call may ask for: every node costs a forward and a backward pass,
#: so more is days of compute (and the rule's arrays grow with it); integrals converge long
#: before (``steps='auto'`` picks what a tolerance needs).
MAX_STEPS = 100_000


def nodes_weights(rule: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(alphas, weights)`` of ``rule`` with ``steps`` nodes; alphas sorted ascending.
    Cost: O(steps) memory; Gauss-Legendre O(steps^2) arithmetic above 100 nodes (see
    ``gauss_legendre``), cached."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer or 'auto', got {steps!r}")
    if steps > MAX_STEPS:
        raise ValueError(f"steps must be at most {MAX_STEPS} (got {steps}): each step is a "
                         f"forward and a backward pass; use steps='auto' with a tolerance")
    if rule == "gausslegendre":
        x, w = gauss_legendre(steps)
        return (x + 1) / 2, w / 2
    if rule == "riemann_trapezoid":
        if steps < 2:
            raise ValueError("riemann_trapezoid needs steps >= 2")
        a = np.linspace(0.0, 1.0, steps)
        w = np.full(steps, 1.0 / (steps - 1))
        w[[0, -1]] /= 2
        return a, w
    k = np.arange(steps, dtype=np.float64)
    offset = {"riemann_left": 0.0, "riemann_right": 1.0, "riemann_middle": 0.5}.get(rule)
    if offset is None:
        raise ValueError(f"unknown rule {rule!r}; expected one of {', '.join(RULES)} "
                         f"or steps='auto'")
    return (k + offset) / steps, np.full(steps, 1.0 / steps)


@lru_cache(maxsize=16)
def gauss_legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes (ascending) and weights on [-1, 1], read-only arrays.

    numpy's ``leggauss`` solves an ``n x n`` eigenproblem (cubic time, quadratic memory: 36 s
    and 0.2 GB at 5000 nodes), so above 100 nodes the roots of ``P_n`` are found by Newton's
    method from Tricomi's asymptotic estimate, ``P_n`` and ``P_n'`` by the three-term
    recurrence over all nodes at once: O(n) memory, O(n^2) arithmetic in n vectorised steps
    (0.5 s at 10^4 nodes on this project's 2-core machine).
    Tricomi's estimate is within O(n^-3) of the root, so two or three Newton steps reach
    rounding error; weights are ``2 / ((1 - x^2) P_n'(x)^2)``.
    """
    if n <= 100:
        x, w = np.polynomial.legendre.leggauss(n)
    else:
        k = np.arange(1, n // 2 + 1, dtype=np.float64)  # the positive half, by symmetry
        theta = np.pi * (4 * k - 1) / (4 * n + 2)
        x = (1 - (n - 1) / (8.0 * n**3)) * np.cos(theta)
        for _ in range(10):
            p, dp = _legendre(n, x)
            step = p / dp
            x = x - step
            if np.abs(step).max() < 1e-15:  # converged to rounding error
                break
        # P_n' at the last iterate, 1e-15 from the root.
        w = 2 / ((1 - x) * (1 + x) * dp * dp)
        middle = ([0.0], [2 / _legendre(n, np.zeros(1))[1][0] ** 2]) if n % 2 else ([], [])
        x = np.concatenate([-x, middle[0], x[::-1]])
        w = np.concatenate([w, middle[1], w[::-1]])
    x.flags.writeable = w.flags.writeable = False  # shared by the cache
    return x, w


def _legendre(n: int, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``P_n(x)`` and ``P_n'(x)`` by Bonnet's recurrence; ``|x| < 1``."""
    p0, p1 = np.ones_like(x), x.copy()
    for j in range(2, n + 1):
        p0, p1 = p1, ((2 * j - 1) * x * p1 - (j - 1) * p0) / j
    return p1, n * (x * p1 - p0) / (x * x - 1)


def cell_edges(weights: np.ndarray) -> np.ndarray:
    """Edges ``0 = t_0 < ... < t_m = 1`` of the cells a rule's weights partition [0, 1] into.

    Each node lies in its own cell (for Gauss-Legendre this is the Chebyshev-Markov-Stieltjes
    separation theorem), so ``sum_k g(alpha_k) (y(t_k) - y(t_{k-1}))`` is a discretisation of a
    path integral in a hidden layer that telescopes to ``y(1) - y(0)`` and reduces to the rule
    itself when ``y`` is linear in alpha.
    """
    edges = np.concatenate([[0.0], np.cumsum(weights)])
    edges[-1] = 1.0
    return edges


def trapezoid_weights(t: np.ndarray) -> np.ndarray:
    """Weights of the composite trapezoid rule on sorted nodes ``t`` (first 0, last 1)."""
    w = np.zeros_like(t)
    h = np.diff(t)
    w[:-1] += h / 2
    w[1:] += h / 2
    return w


def refine(
    evaluate: Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
    n: int,
    tol: float,
    max_evals: int,
    start: int = 8,
    share: float = 0.25,
    guard: float = 10.0,
) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """Adaptive composite trapezoid rule for ``n`` paths, driven by exact local checks.

    Every sub-interval ``[a, b]`` of a path has its own exact check: ``F(b) - F(a)`` must equal
    ``int_a^b dF/dalpha``. With the trapezoid rule the nodes are the interval ends, so one
    gradient evaluation at a node yields both its integrand ``dF/dalpha = grad F . (x - x')``
    and ``F`` itself: the checks cost nothing extra, and bisecting an interval costs one
    evaluation. ``evaluate(ids, ex, t)`` evaluates example ``ex_i`` at ``alpha = t_i`` and
    returns ``(F, dF/dalpha)``; ``ids`` number the nodes so the caller can keep their
    gradients.

    Each round bisects the ``share`` of a path's intervals with the largest local error, until
    the completeness gap (the sum of the signed local errors) is at most ``tol * |F(1) - F(0)|``
    and the sum of their absolute values at most ``guard`` times that (so that a lucky
    cancellation between coarse intervals does not end the refinement), or until
    ``max_evals`` evaluations. Returns per example the sorted nodes and their ids, and arrays
    of the completeness gap, the evaluations spent and whether the tolerance was met.
    """
    t0 = np.linspace(0.0, 1.0, start + 1)
    ex = np.repeat(np.arange(n), start + 1)
    ids = np.arange(n * (start + 1))
    f, d = evaluate(ids, ex, np.tile(t0, n))
    nodes = [t0.copy() for _ in range(n)]
    node_ids = [ids[i * (start + 1):(i + 1) * (start + 1)] for i in range(n)]
    fs = [f[i * (start + 1):(i + 1) * (start + 1)] for i in range(n)]
    ds = [d[i * (start + 1):(i + 1) * (start + 1)] for i in range(n)]
    evals = np.full(n, start + 1)
    converged = np.zeros(n, bool)
    gap = np.zeros(n)
    next_id = n * (start + 1)
    while True:
        todo_ex, todo_t = [], []
        for i in range(n):
            err = _local_errors(nodes[i], fs[i], ds[i])
            gap[i] = err.sum()
            budget = tol * abs(fs[i][-1] - fs[i][0])
            if abs(gap[i]) <= budget and np.abs(err).sum() <= guard * budget:
                converged[i] = True
                continue
            k = min(max(1, int(np.ceil(share * len(err)))), max_evals - evals[i])
            if k <= 0:
                continue
            worst = np.argsort(-np.abs(err))[:k]
            todo_ex += [i] * k
            todo_t += list((nodes[i][worst] + nodes[i][worst + 1]) / 2)
            evals[i] += k
        if not todo_ex:
            break
        todo_ex, todo_t = np.array(todo_ex), np.array(todo_t)
        new_ids = np.arange(next_id, next_id + len(todo_t))
        next_id += len(todo_t)
        f, d = evaluate(new_ids, todo_ex, todo_t)
        for i in np.unique(todo_ex):
            sel = todo_ex == i
            t = np.concatenate([nodes[i], todo_t[sel]])
            order = np.argsort(t, kind="stable")
            nodes[i] = t[order]
            node_ids[i] = np.concatenate([node_ids[i], new_ids[sel]])[order]
            fs[i] = np.concatenate([fs[i], f[sel]])[order]
            ds[i] = np.concatenate([ds[i], d[sel]])[order]
    return nodes, node_ids, gap, evals, converged


def _local_errors(t: np.ndarray, f: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Trapezoid estimate minus the exact change of ``F`` on each interval."""
    return np.diff(t) * (d[:-1] + d[1:]) / 2 - np.diff(f)
