"""Leaderboard statistics: steps to grok from traces, fractions with intervals, censored medians and speed-ups."""

import numpy as np
from scipy.stats import binomtest

from grokjax.analysis.leaderboard import best_setting, censored, median, speedup, steps_to, summarize


def test_steps_to_is_the_first_logged_step_at_the_threshold():
    steps = np.array([0, 100, 200, 300])
    acc = np.array([[0.1, 0.96, 0.99, 1.0], [0.1, 0.2, 0.3, 0.94], [1.0, 1.0, 1.0, 1.0]])
    assert list(steps_to(steps, acc, 0.95)) == [100, -1, 0]
    assert list(steps_to(steps, acc, 0.99)) == [200, -1, 0]


def test_summary_counts_never_grokked_runs_at_the_budget():
    s = summarize(np.array([10, 20, 30, -1]), budget=100)
    ci = binomtest(3, 4).proportion_ci(method="wilson")
    assert s.n_runs == 4 and s.grokked["count"] == 3 and s.grokked["fraction"] == 0.75
    assert np.isclose(s.grokked["ci_low"], ci.low) and np.isclose(s.grokked["ci_high"], ci.high)
    assert s.median_steps == 20  # the lower median of 10, 20, 30, 100: an actual run's value
    assert s.median_low in (10, 20, 30, 100) and s.median_high in (10, 20, 30, 100)
    assert s.median_low <= 20 <= s.median_high
    assert summarize(np.array([-1, -1, 5]), budget=50).median_steps == 50  # most never grokked: at the budget


def test_bootstrap_interval_of_the_median_covers_the_truth_and_narrows_with_runs():
    rng = np.random.default_rng(1)
    small, large = (np.round(rng.exponential(1000, n)).astype(int) for n in (30, 3000))
    truth = 1000 * np.log(2)
    a, b = summarize(small, 10**6, seed=3), summarize(large, 10**6, seed=3)
    assert a.median_low <= truth <= a.median_high and b.median_low <= truth <= b.median_high
    assert b.median_high - b.median_low < (a.median_high - a.median_low) / 4


def test_speedup_is_the_ratio_of_medians_with_an_interval():
    ratio, low, high = speedup(np.full(20, 100), np.full(20, 10), budget=1000)
    assert (ratio, low, high) == (10.0, 10.0, 10.0)
    base = np.array([400, 500, 600, -1, 550, 450])
    ours = np.array([40, 60, 50, 45, 55, 70])
    ratio, low, high = speedup(base, ours, budget=1000)
    assert ratio == median(censored(base, 1000)) / median(ours) and low <= ratio <= high
    assert low > 5  # every resample's method median is at most 70, the baseline's at least 400


def test_best_setting_is_the_smallest_median_then_the_most_grokked():
    steps = np.array([[100, 200, 300], [50, -1, 55], [50, 55, 60]])  # 1 and 2 tie at 55; 2 grokked more
    assert best_setting(steps, budget=1000) == 2
