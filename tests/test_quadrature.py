import numpy as np
import pytest

from pathattr.methods.conductance import edge_plan
from pathattr.quadrature import (
    MAX_STEPS,
    RULES,
    cell_edges,
    gauss_legendre,
    nodes_weights,
    refine,
    trapezoid_weights,
)


@pytest.mark.parametrize("rule", RULES)
def test_rules_integrate_polynomials(rule):
    a, w = nodes_weights(rule, 40)
    assert np.all(np.diff(a) > 0) and a.min() >= 0 and a.max() <= 1
    assert w.sum() == pytest.approx(1.0, abs=1e-12)
    # every rule is consistent: x^2 integrates to 1/3 up to its order
    assert (w * a**2).sum() == pytest.approx(1 / 3, abs=0.03)


def test_gausslegendre_exact_for_high_degree():
    a, w = nodes_weights("gausslegendre", 6)
    assert (w * a**11).sum() == pytest.approx(1 / 12, rel=1e-13)


@pytest.mark.parametrize("n", [101, 250, 1001])
def test_large_gausslegendre_exact_for_every_degree_below_2n(n):
    # The Newton/recurrence branch (n > 100): the rule of n nodes integrates x^m exactly for
    # every m < 2n, the defining property, checked against 2/(m+1) for even m, 0 for odd m.
    x, w = gauss_legendre(n)
    assert np.all(np.diff(x) > 0) and x[0] > -1 and x[-1] < 1
    np.testing.assert_allclose(x, -x[::-1], atol=1e-16)
    m = np.arange(0, 2 * n, 2)
    moments = (w[None, :] * x[None, :] ** m[:, None]).sum(1)
    np.testing.assert_allclose(moments, 2 / (m + 1), rtol=1e-12, atol=2e-14)
    assert abs((w * x ** (2 * n - 1)).sum()) < 1e-14


def test_large_gausslegendre_nodes_agree_with_numpy():
    x, w = gauss_legendre(400)
    xs, ws = np.polynomial.legendre.leggauss(400)
    np.testing.assert_allclose(x, xs, atol=1e-15)
    np.testing.assert_allclose(w, ws, rtol=1e-8)  # numpy's own weights are off by ~1e-9 here


def test_steps_bounded_with_a_clear_error():
    with pytest.raises(ValueError, match=f"steps must be at most {MAX_STEPS}"):
        nodes_weights("gausslegendre", 10**7)
    with pytest.raises(ValueError, match="steps must be at most"):
        nodes_weights("riemann_left", MAX_STEPS + 1)


@pytest.mark.parametrize("rule", ["gausslegendre", "riemann_left", "riemann_trapezoid"])
def test_edge_plan_matches_the_full_distance_table(rule):
    # The sorted-neighbour search must find what the quadratic edge-by-node table finds.
    a, w = nodes_weights(rule, 37)
    plan = edge_plan(a, w)
    gap = np.abs(plan.edges[:, None] - a[None, :])
    expected = np.where(gap.min(1) < 1e-12, gap.argmin(1), -1)
    np.testing.assert_array_equal(plan.node_of_edge, expected)


def test_riemann_nodes():
    assert nodes_weights("riemann_left", 4)[0].tolist() == [0, 0.25, 0.5, 0.75]
    assert nodes_weights("riemann_right", 4)[0].tolist() == [0.25, 0.5, 0.75, 1]
    assert nodes_weights("riemann_middle", 2)[0].tolist() == [0.25, 0.75]
    a, w = nodes_weights("riemann_trapezoid", 3)
    assert a.tolist() == [0, 0.5, 1] and w.tolist() == [0.25, 0.5, 0.25]


@pytest.mark.parametrize("rule", RULES)
def test_each_node_in_its_cell(rule):
    a, w = nodes_weights(rule, 17)
    t = cell_edges(w)
    assert t[0] == 0 and t[-1] == 1
    assert np.all(t[:-1] <= a + 1e-15) and np.all(a <= t[1:] + 1e-15)


def test_bad_rule_and_steps():
    with pytest.raises(ValueError, match="unknown rule"):
        nodes_weights("simpson", 4)
    with pytest.raises(ValueError, match="steps"):
        nodes_weights("gausslegendre", 0)


def test_refine_meets_tolerance_on_kinked_integrand():
    # F(a) = |a - 0.3| + sin(5a): a kink that fixed rules converge to slowly
    def evaluate(ids, ex, t):
        return np.abs(t - 0.3) + np.sin(5 * t), np.sign(t - 0.3) + 5 * np.cos(5 * t)

    nodes, ids, gap, evals, ok = refine(evaluate, 2, 1e-6, 4096)
    total = np.sin(5.0) + 0.7 - 0.3
    for t in nodes:
        f, d = evaluate(None, None, t)
        estimate = (trapezoid_weights(t) * d).sum()
        assert abs(estimate - total) <= 1e-6 * abs(total)
        assert t[0] == 0 and t[-1] == 1 and np.all(np.diff(t) > 0)
        # the refinement concentrates near the kink
        assert np.diff(t)[np.searchsorted(t, 0.3) - 1] < 0.01
    assert ok.all() and np.allclose(gap, [(trapezoid_weights(t) * evaluate(0, 0, t)[1]).sum()
                                          - total for t in nodes])
    assert len(set(np.concatenate(ids).tolist())) == sum(len(t) for t in nodes)


def test_refine_reports_budget_exhaustion():
    def evaluate(ids, ex, t):
        return np.abs(t - 1 / 3), np.sign(t - 1 / 3)

    nodes, ids, gap, evals, ok = refine(evaluate, 1, 1e-12, 40)
    assert not ok[0] and evals[0] == 40 and len(nodes[0]) == 40


def test_trapezoid_weights():
    assert trapezoid_weights(np.array([0, 0.25, 1.0])).tolist() == [0.125, 0.5, 0.375]
