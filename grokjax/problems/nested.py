"""Nested training sets over a grid of training fractions, so that fractions x seeds are one compiled program.

A problem whose training set at fraction f is a prefix of one fixed order of its points (drawn from its data
seed: the modular "random" and "thread" splits, the group tasks "intersection_fraction" and "iid") gives nested
sets: the points trained on at a smaller fraction are among those at every larger one. `nested_data` builds the
problem at every swept fraction, checks that the sets nest and agree on their labels, and returns the problem's
`Data` at fraction 1 (the pool: every point it could train on) with `train_entry`: per pool point, the smallest
swept fraction that trains on it (infinity for none). The trainer then trains a run at fraction f on the points
with `train_entry <= f` (`grokjax.train`), exactly the points the problem itself trains on at f. The pool does not
depend on the grid, so a run's numbers do not either: a run at f is bit for bit the run of a grid of f alone (and
equal, up to float32 rounding of a sum over more points, to the problem trained at f without a mask).
"""

import dataclasses

import numpy as np

from grokjax.errors import UserError
from grokjax.problems.base import Data


def nested_data(problem, fractions) -> Data:
    """The `Data` of `problem` at fraction 1 with `train_entry` for `fractions` (see the module); a problem
    without a training fraction, or whose sets do not nest, is a UserError."""
    if not hasattr(problem, "fraction"):
        raise UserError(f"The {problem.kind} problem has no training fraction to sweep.")
    levels = sorted(set(fractions))
    builds = [dataclasses.replace(problem, fraction=f).build() for f in levels]
    pool = dataclasses.replace(problem, fraction=1.0).build()
    entry = np.full(pool.n_train, np.inf, np.float32)
    for f, smaller, larger in reversed(list(zip(levels, builds, builds[1:] + [pool]))):
        at = np.searchsorted(pool.train_idx, smaller.train_idx)
        inside = np.isin(smaller.train_idx, larger.train_idx)
        if not inside.all() or not np.array_equal(pool.train_labels[at], smaller.train_labels):
            raise UserError(f"The training sets of this problem at the fractions {', '.join(map(str, levels))} are "
                            f"not nested (a smaller set is not inside every larger one): use a random split.")
        entry[at] = np.float32(f)  # the run's fraction reaches the trainer as this float32
    sizes = [b.n_train for b in builds]
    if any(a >= b for a, b in zip(sizes, sizes[1:])):
        raise UserError(f"The swept fractions do not all give different training sets ({', '.join(map(str, sizes))} "
                        f"points): this problem's training set does not depend on its fraction, or the fractions "
                        f"are too close for its {pool.n_train} points.")
    summary = {**pool.summary, "fraction_grid": levels, "n_train_by_fraction": sizes}
    return dataclasses.replace(pool, train_entry=entry, summary=summary, arrays={**pool.arrays, "train_entry": entry})
