"""Steps to grok, per run and per method, with error bars: the statistics of the modular-arithmetic leaderboard.

A run's *steps to q* is the first logged step at which its validation accuracy (the held-out accuracy of the
traces) reaches q, or -1 if it never does within the budget. Per method:

- the fraction of runs that grokked within the budget, with its Wilson (or Clopper-Pearson) interval;
- the median steps to q over *all* runs, a run that never grokked counted at the budget (censored): a median at
  the budget means at least half did not grok within it; with a percentile bootstrap interval;
- the speed-up over a baseline: the ratio of the baseline's median to the method's, with a bootstrap interval from
  resampling both methods' runs independently (a lower bound when the baseline's median is censored).

Medians are order statistics (no interpolation, `method="inverted_cdf"`), so a median is always some run's value.
Intervals come from scipy.stats (`binomtest`, `bootstrap`); bootstrap draws use `numpy.random.default_rng(seed)`.
"""

from typing import NamedTuple

import numpy as np
from scipy.stats import bootstrap

from grokjax.analysis.outcomes import first_epoch_at_least, proportion

N_RESAMPLES = 2000


def steps_to(steps: np.ndarray, accuracy: np.ndarray, threshold: float) -> np.ndarray:
    """(runs,) first logged step with `accuracy` (runs, logs) at least `threshold`, -1 if none."""
    return first_epoch_at_least(np.asarray(steps), np.asarray(accuracy), threshold)


def censored(steps: np.ndarray, budget: int) -> np.ndarray:
    """Steps to grok as floats, a run that never grokked (-1) at the budget."""
    s = np.asarray(steps, float)
    return np.where(s < 0, float(budget), s)


def median(x, axis=-1):
    """The lower median, an order statistic (see the module docstring)."""
    return np.quantile(x, 0.5, axis=axis, method="inverted_cdf")


def _interval(data: tuple, statistic, level: float, seed: int) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic`; NaN with fewer than two runs in a sample."""
    if min(len(d) for d in data) < 2:
        return np.nan, np.nan
    res = bootstrap(data, statistic, n_resamples=N_RESAMPLES, confidence_level=level, method="percentile",
                    vectorized=True, random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


class MethodSummary(NamedTuple):
    n_runs: int
    grokked: dict  # count, fraction, ci_low, ci_high of the runs that grokked within the budget
    median_steps: float  # over all runs, a run that never grokked counted at the budget
    median_low: float
    median_high: float


def summarize(steps: np.ndarray, budget: int, level: float = 0.95, seed: int = 0,
              method: str = "wilson") -> MethodSummary:
    """Fraction grokked and median steps, each with its interval, from (runs,) steps to the threshold (-1: never).
    Diverged runs are the caller's to leave out and report apart."""
    steps = np.asarray(steps)
    x = censored(steps, budget)
    low, high = _interval((x,), median, level, seed)
    return MethodSummary(len(x), proportion(int((steps >= 0).sum()), len(x), level, method), float(median(x)),
                         low, high)


def speedup(baseline_steps: np.ndarray, method_steps: np.ndarray, budget: int, level: float = 0.95,
            seed: int = 0) -> tuple[float, float, float]:
    """(baseline median / method median, interval low, high), both sets of runs resampled independently."""
    ratio = lambda b, m, axis=-1: median(b, axis) / median(m, axis)
    base, ours = censored(baseline_steps, budget), censored(method_steps, budget)
    return (float(ratio(base, ours)), *_interval((base, ours), ratio, level, seed))


def best_setting(steps: np.ndarray, budget: int) -> int:
    """Index of the hyperparameter setting (leading axis of `steps`, (settings, runs)) with the smallest median
    steps, ties broken by the larger fraction grokked."""
    steps = np.asarray(steps)
    medians, grokked = median(censored(steps, budget), axis=1), (steps >= 0).mean(1)
    return int(np.lexsort((-grokked, medians))[0])
