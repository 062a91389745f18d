"""Quadrature rules on [0, 1] as (nodes, weights), and the cells a rule induces.

Nodes and weights are float64 numpy arrays; callers cast them to the model's dtype.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

RULES = ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre")


def nodes_weights(rule: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(alphas, weights)`` of ``rule`` with ``steps`` nodes; alphas sorted ascending."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer or 'auto', got {steps!r}")
    if rule == "gausslegendre":
        x, w = np.polynomial.legendre.leggauss(steps)
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


def gauss_on(a: np.ndarray, b: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights of ``order`` on each interval ``[a_i, b_i]``.

    Returns arrays of shape ``(len(a), order)``.
    """
    x, w = np.polynomial.legendre.leggauss(order)
    half = (b - a)[:, None] / 2
    return a[:, None] + half * (x + 1), half * w


def refine(
    integrate: Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray],
    values: Callable[[np.ndarray, np.ndarray], np.ndarray],
    f0: np.ndarray,
    f1: np.ndarray,
    tol: float,
    max_evals: int,
    order: int = 2,
    start: int = 4,
) -> tuple[list[list[tuple[float, float, int]]], np.ndarray, np.ndarray, np.ndarray]:
    """Adaptive quadrature of a batch of paths, driven by the exact local completeness check.

    Every sub-interval ``[a, b]`` of a path has its own exact check: ``F(b) - F(a)`` must equal
    ``int_a^b dF/dalpha``. ``integrate(ids, ex, a, b)`` estimates that integral on intervals
    ``[a_i, b_i]`` of example ``ex_i`` with ``order``-point Gauss-Legendre (``order`` gradient
    evaluations each; ``ids`` name the intervals so the caller can keep their contributions);
    ``values(ex, t)`` returns ``F`` at path points (forward only). Intervals with the largest
    local error are bisected until the sum of local errors of the example is at most
    ``tol * |f1 - f0|`` -- a bound on its completeness gap, since the gap is the sum of the
    local errors -- or until its next round would exceed ``max_evals`` gradient evaluations.

    Returns per example its final intervals ``(a, b, id)``, and arrays of the summed absolute
    local error, the gradient evaluations spent, and whether the tolerance was met.
    """
    n = len(f0)
    budget = tol * np.abs(f1 - f0)
    edges = np.linspace(0.0, 1.0, start + 1)
    ex = np.repeat(np.arange(n), start - 1)
    inner = values(ex, np.tile(edges[1:-1], n)).reshape(n, start - 1)
    fv = np.concatenate([f0[:, None], inner, f1[:, None]], 1)
    ids = np.arange(n * start)
    est = integrate(ids, np.repeat(np.arange(n), start), np.tile(edges[:-1], n),
                    np.tile(edges[1:], n)).reshape(n, start)
    # per example: list of [a, b, fa, fb, est, id]
    paths = [[[edges[j], edges[j + 1], fv[i, j], fv[i, j + 1], est[i, j], ids[i * start + j]]
              for j in range(start)] for i in range(n)]
    evals = np.full(n, order * start)
    converged = np.zeros(n, bool)
    next_id = n * start
    while True:
        todo = []  # (example, interval) to bisect this round
        for i, path in enumerate(paths):
            errs = np.array([abs(iv[4] - (iv[3] - iv[2])) for iv in path])
            if errs.sum() <= budget[i]:
                converged[i] = True
                continue
            split = _largest_until(errs, budget[i])
            if evals[i] + 2 * order * len(split) > max_evals:
                split = split[: max(0, (max_evals - evals[i]) // (2 * order))]
            if len(split) == 0:
                continue
            evals[i] += 2 * order * len(split)
            todo += [(i, path[j]) for j in split]
        if not todo:
            break
        mids = np.array([(iv[0] + iv[1]) / 2 for _, iv in todo])
        which = np.array([i for i, _ in todo])
        f_mid = values(which, mids)
        a = np.array([[iv[0], m] for (_, iv), m in zip(todo, mids)]).ravel()
        b = np.array([[m, iv[1]] for (_, iv), m in zip(todo, mids)]).ravel()
        new_ids = np.arange(next_id, next_id + len(a))
        next_id += len(a)
        new_est = integrate(new_ids, np.repeat(which, 2), a, b)
        for k, (i, iv) in enumerate(todo):
            path = paths[i]
            j = next(j for j, other in enumerate(path) if other is iv)
            left = [iv[0], mids[k], iv[2], f_mid[k], new_est[2 * k], new_ids[2 * k]]
            right = [mids[k], iv[1], f_mid[k], iv[3], new_est[2 * k + 1], new_ids[2 * k + 1]]
            path[j:j + 1] = [left, right]
    final = [[(iv[0], iv[1], int(iv[5])) for iv in path] for path in paths]
    err = np.array([sum(abs(iv[4] - (iv[3] - iv[2])) for iv in path) for path in paths])
    return final, err, evals, converged


def _largest_until(abs_err: np.ndarray, budget: float) -> list[int]:
    """Indices of the largest local errors whose removal leaves at most half the budget."""
    chosen, remaining = [], abs_err.sum()
    for j in np.argsort(-abs_err):
        if remaining <= budget / 2 and chosen:
            break
        chosen.append(int(j))
        remaining -= abs_err[j]
    return chosen
