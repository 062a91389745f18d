"""Bootstrap intervals and paired comparisons."""

import dataclasses

import numpy as np
import pytest

from pathattr import metrics


def test_bootstrap_interval_covers_the_mean_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    small, big = rng.normal(1.0, 1.0, 20), rng.normal(1.0, 1.0, 2000)
    a, b = metrics.bootstrap(small), metrics.bootstrap(big)
    assert a.low < a.mean < a.high and b.low < b.mean < b.high
    assert (b.high - b.low) < (a.high - a.low) / 5  # ~ 1/sqrt(n): 10x more data, ~1/10 width
    # the normal-theory 95 % half width 1.96 sd / sqrt(n) for the large sample
    assert (b.high - b.low) / 2 == pytest.approx(1.96 * big.std() / np.sqrt(big.size), rel=0.1)
    assert metrics.bootstrap(small, seed=1) != a and metrics.bootstrap(small, seed=0) == a


def test_compare_says_a_beats_b_only_when_the_interval_excludes_zero():
    rng = np.random.default_rng(1)
    b = rng.normal(0.0, 1.0, 60)
    better = metrics.compare(b + 0.5 + rng.normal(0, 0.2, 60), b)
    assert better.verdict == "a > b" and better.p_value < 1e-6
    same = metrics.compare(b + rng.normal(0, 0.2, 60), b)
    assert same.verdict == "no difference" and same.p_value > 0.05
    assert metrics.compare(b, b + 1).verdict == "a < b"
    assert metrics.compare(b, b).p_value == 1.0


def test_wilcoxon_p_value_hand_computed():
    # five positive differences of distinct size: of the 2^5 sign patterns only "all +" and
    # "all -" are as extreme, so the exact two-sided p-value is 2/32.
    r = metrics.compare([1.0, 2.0, 3.0, 4.0, 5.0], [0.0, 0.0, 0.0, 0.0, 0.0])
    assert r.p_value == pytest.approx(2 / 32)


def test_bad_values():
    with pytest.raises(ValueError, match="paired"):
        metrics.compare([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="NaN"):
        metrics.bootstrap([1.0, float("nan")])
    with pytest.raises(ValueError, match="empty"):
        metrics.bootstrap([])


def test_a_narrow_bootstrap_on_few_inputs_needs_the_rank_test_too():
    b = np.zeros(6)
    a = np.array([0.001, 0.002, 0.003, -0.0001, 0.004, 0.002])
    c = metrics.compare(a, b)
    assert c.difference.low > 0  # the percentile interval alone would say "a > b"
    assert c.p_value == pytest.approx(0.0625)  # exact: 4 of 64 sign patterns as extreme
    assert c.verdict == "no difference"
    assert metrics.compare(np.abs(a) + 0.001, b).verdict == "a > b"  # p = 2 / 64


@pytest.mark.parametrize("draw", ["normal", "exponential"])
def test_bootstrap_intervals_cover_the_true_mean_at_the_nominal_rate(draw):
    rng = np.random.default_rng(3)
    hits = 0
    trials = 400
    for i in range(trials):
        v = rng.normal(1.0, 2.0, 30) if draw == "normal" else rng.exponential(1.0, 30)
        iv = metrics.bootstrap(v, n_resamples=2000, seed=i)
        hits += iv.low <= 1.0 <= iv.high
    assert abs(hits / trials - 0.95) <= 0.05


def test_holm_hand_computed():
    # sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 -> kept at 0.06
    assert metrics.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert metrics.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert metrics.holm([0.02]) == pytest.approx([0.02])  # a family of one is not adjusted


def test_holm_keeps_the_family_wise_error_rate():
    # 10 true null hypotheses per family: uniform p-values; any adjusted p < 0.05 is an error
    rng = np.random.default_rng(4)
    errors = sum(min(metrics.holm(rng.uniform(size=10))) < 0.05 for _ in range(2000))
    unadjusted = sum(rng.uniform(size=10).min() < 0.05 for _ in range(2000))
    assert errors / 2000 < 0.06 and unadjusted / 2000 > 0.3  # 1 - 0.95^10 = 0.40


def test_effect_sizes_hand_computed():
    assert metrics.effect_size(np.array([1.0, 2.0, 3.0])) == pytest.approx(2.0)  # mean 2, sd 1
    assert metrics.effect_size(np.zeros(4)) == 0.0
    assert metrics.effect_size(np.full(3, -0.5)) == -np.inf
    # |d| ranks 1, 2, 3, 4: R+ = 1 + 3 + 4, R- = 2
    assert metrics.rank_biserial(np.array([1.0, -2.0, 3.0, 4.0])) == pytest.approx(0.6)
    # ties share ranks 1.5, 1.5; zeros are dropped
    assert metrics.rank_biserial(np.array([1.0, -1.0, 2.0, 0.0])) == pytest.approx(0.5)
    c = metrics.compare([3.0, 4.0, 6.0], [2.0, 2.0, 3.0])
    assert c.effect == pytest.approx(2.0) and c.rank_biserial == 1.0


def test_inputs_needed_gives_the_power_it_promises():
    n = int(metrics.inputs_needed(0.5))
    assert n == 33  # ((1.96 + 0.8416) / 0.5)^2 / (3 / pi) = 32.9
    rng = np.random.default_rng(5)
    decided = sum(metrics.compare(rng.normal(0.5, 1.0, n), np.zeros(n), n_resamples=200)
                  .verdict == "a > b" for _ in range(300))
    assert 0.7 < decided / 300 < 0.9  # the promised 80 %, simulated with the Wilcoxon test
    assert metrics.detectable_effect(n) == pytest.approx(0.5, rel=0.02)
    assert metrics.inputs_needed(0.0) == np.inf
    # no fewer than the exact test needs to reach p < 0.05 at all: 2 / 2^6 = 0.031
    assert metrics.inputs_needed(np.inf) == metrics.inputs_needed(5.0) == 6
    assert metrics.inputs_needed(5.0, level=0.99) == 8  # 2 / 2^8 < 0.01


def test_the_verdict_reads_the_adjusted_p_value():
    c = metrics.compare([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], np.zeros(6))
    assert c.verdict == "a > b"  # p = 2 / 64
    assert dataclasses.replace(c, adjusted_p=0.09).verdict == "no difference"
