"""What every problem hands the trainer: the points a model sees, which are trained on, and the evaluation sets.

A *problem* is a task family (group tables today; modular arithmetic, parity and linear teachers follow). Its
spec is a frozen dataclass with a `kind`, registered in `grokjax.problems.PROBLEMS`, whose `build()` returns a
`Data`. Models and the trainer see only `Data`, so a new problem is one module and one registry line.
"""

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, eq=False)
class Variants:
    """Problems on the same points, one per grid point of the axis "variant": per variant, the labels of the pool's
    points, which of them it trains on, and its evaluation sets (the same number of sets for every variant).

    With `inputs`, each variant also has its own real-valued features, zero-padded to the widest variant's
    `input_width` (e.g. concealed parity over the number of bits): the model then draws its first layer for the
    variant's own width with zero weights on the padding, which stay zero (their inputs are zero, so is their
    gradient, and every optimizer maps a zero gradient on a zero weight to no step), so a run is the network of its
    own width.
    """

    names: tuple[str, ...]
    train_labels: np.ndarray  # (n_variants, n_train) int32 labels of the pool points (any value where not trained)
    train_mask: np.ndarray  # (n_variants, n_train) bool: the variant trains on this pool point
    eval_labels: np.ndarray  # (n_variants, n_sets, n_points) int32
    inputs: np.ndarray | None = None  # (n_variants, n_points, d) float32, zero beyond each variant's width
    input_width: np.ndarray | None = None  # (n_variants,) int32: the features of each variant (the rest padding)

    def __len__(self) -> int:
        return len(self.names)


@dataclass(frozen=True, eq=False)
class Data:
    """Every point the model is evaluated on, the training subset with its labels, and the evaluation sets.

    `inputs` holds one row of tokens per point (for group tables the pair (a, b), row a * N + b). Each evaluation
    set labels every point (a group's full table); a run *reaches* a set when its accuracy there is at least the
    threshold, and the outcome of a run is the subset of sets it reached.

    With `train_entry` (a sweep over training fractions, `grokjax.run.specs.SweepConfig.fraction_grid`), the
    training points are the pool of the largest fraction and `train_entry[i]` is the smallest swept fraction whose
    training set holds point i: a run at fraction f trains on the points with `train_entry <= f` (nested sets).

    With `variants` (several problems on the same points swept as the grid axis "variant", e.g. the pairs of groups
    of one order in `grokjax.problems.group_pairs`), each variant has its own training labels and mask over the
    pool `train_idx`, its own evaluation sets and possibly its own inputs; `train_labels`, `eval_labels` and
    `inputs` are then variant 0's (`inputs` padded like the others').
    """

    inputs: np.ndarray  # (n_points, arity) int32 tokens in 0 .. vocab - 1 (or float features)
    vocab: int
    n_classes: int
    train_idx: np.ndarray  # (n_train,) int32 sorted row indices into `inputs`
    train_labels: np.ndarray  # (n_train,) int32
    eval_labels: np.ndarray  # (n_sets, n_points) int32
    eval_names: tuple[str, ...]
    summary: dict = field(default_factory=dict)  # saved as config.json's "task" (with group_names = eval_names)
    arrays: dict = field(default_factory=dict)  # saved as task.npz
    train_entry: np.ndarray | None = None  # (n_train,) float32: with a grid of training fractions (see below)
    variants: Variants | None = None  # with a grid of problems on the same points (see below)

    @property
    def n_train(self) -> int:
        return len(self.train_idx)

    @property
    def n_points(self) -> int:
        return len(self.inputs)

    def columns(self, rows=None) -> tuple:
        """The model's inputs at `rows` (default: every point): a tuple of (rows,) token arrays, one per position,
        or, for real-valued inputs, the one (rows, d) array."""
        x = self.inputs if rows is None else self.inputs[rows]
        if x.dtype.kind == "f":
            return (x,)
        return tuple(x[:, i] for i in range(x.shape[1]))
