"""Ungrokking and semi-grokking (Varma et al.) detected on accuracy traces, with stated rules.

- *Ungrokked*: a run that had generalized (test accuracy at least `threshold` when the continuation starts) and
  whose test accuracy at the end of the continuation on a smaller training set is below `threshold`.
- *Semi-grokked*: a run trained from scratch whose test accuracy rose after it fitted its training set but settled
  well below 1. Rule: the run fitted (train accuracy reached `fit_level`); over the last `tail` of the logs its test
  accuracy has a mean (the plateau) between `low` and `high` and moves by at most `stability` (max - min); and the
  plateau is at least `rise` above the test accuracy at the first log where the run had fitted.

Pure numpy on (runs, logs) arrays; a NaN trace (a diverged run) is never counted as either.
"""

import numpy as np

from grokjax.analysis.outcomes import first_epoch_at_least


def ungrokked(test_before: np.ndarray, test_after: np.ndarray, threshold: float = 0.95) -> np.ndarray:
    """(runs,) True where the run had generalized before the continuation and no longer has at its end."""
    before, after = np.asarray(test_before, float), np.asarray(test_after, float)
    return (before >= threshold) & (after < threshold)


def plateau(test_acc: np.ndarray, tail: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """(mean, max - min) of each run's test accuracy over the last `tail` fraction of its logs (at least 2)."""
    acc = np.asarray(test_acc, float)
    last = acc[:, -max(2, int(round(tail * acc.shape[1]))):]
    return last.mean(1), last.max(1) - last.min(1)


def semi_grokked(epochs: np.ndarray, train_acc: np.ndarray, test_acc: np.ndarray, fit_level: float = 1.0,
                 low: float = 0.2, high: float = 0.9, rise: float = 0.1, stability: float = 0.05,
                 tail: float = 0.2) -> np.ndarray:
    """(runs,) True for the runs that semi-grokked by the rule of the module docstring."""
    epochs, train, test = np.asarray(epochs), np.asarray(train_acc, float), np.asarray(test_acc, float)
    fit = first_epoch_at_least(epochs, train, fit_level)
    at_fit = np.where(fit >= 0, test[np.arange(len(test)), np.searchsorted(epochs, np.maximum(fit, 0))], np.nan)
    level, spread = plateau(test, tail)
    with np.errstate(invalid="ignore"):
        return (fit >= 0) & (level >= low) & (level <= high) & (spread <= stability) & (level - at_fit >= rise)
