import numpy as np
import pytest

from pathattr.quadrature import RULES, cell_edges, nodes_weights, refine, trapezoid_weights


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
