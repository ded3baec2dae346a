"""Transplant: does a solution survive a change of training set? Classify runs that grokked one group's table
and then trained on the intersection of two groups.

Per run, from the second phase's trace (accuracy on the source group's full table and on the training points,
the intersection, at every logged epoch):

- *stays grokked*: its source-group accuracy never falls below the threshold;
- *ungrokks*: at some logged epoch it falls below the threshold while the intersection is still fitted
  (training accuracy at least the threshold): the solution is lost without a training signal to lose it;
- *regroks*: ungrokked, and back at or above the threshold at the end;
- runs that had not grokked their source table before the transplant, or whose loss became non-finite, are
  counted apart (they have no solution to keep).
"""

from typing import NamedTuple

import numpy as np

FATES = ("stays grokked", "ungrokked", "regrokked", "not grokked before", "diverged")


class Fates(NamedTuple):
    """(runs,) booleans; `ungrokked` includes the `regrokked` runs, as the study counts partial ungrokking."""

    grokked_before: np.ndarray
    stays: np.ndarray
    ungrokked: np.ndarray
    regrokked: np.ndarray
    diverged: np.ndarray
    first_ungrok: np.ndarray  # (runs,) index of the first logged epoch below the threshold, -1 if none


def classify(before_acc, source_acc, train_acc, threshold: float, finite) -> Fates:
    """Fates of runs from the source-group accuracy before the transplant (runs,), and the source-group and
    training (intersection) accuracies after it (runs, logs); `finite` (runs,) marks runs that stayed finite."""
    before_acc, source_acc, train_acc = map(np.asarray, (before_acc, source_acc, train_acc))
    finite = np.asarray(finite, bool)
    grokked_before = (before_acc >= threshold) & finite
    lost = (source_acc < threshold) & (train_acc >= threshold)
    ungrokked = grokked_before & lost.any(1)
    regrokked = ungrokked & (source_acc[:, -1] >= threshold)
    first = np.where(lost.any(1), np.argmax(lost, 1), -1)
    return Fates(grokked_before, grokked_before & ~ungrokked, ungrokked, regrokked, ~finite,
                 np.where(ungrokked, first, -1))


def fate_counts(f: Fates) -> dict:
    """How many runs have each of `FATES` (ungrokked counts the regrokked runs too) and how many grokked before."""
    return {"stays grokked": int(f.stays.sum()), "ungrokked": int(f.ungrokked.sum()),
            "regrokked": int(f.regrokked.sum()), "not grokked before": int((~f.grokked_before & ~f.diverged).sum()),
            "diverged": int(f.diverged.sum()), "grokked before": int(f.grokked_before.sum())}
