"""Modular arithmetic: x o y mod p for + - * / or any polynomial in x and y, on a training fraction of the table.

`ModularProblem` (kind "modular") builds the trainer's `Data`: every pair (x, y) on which the operation is
defined (for x / y, y != 0), a training subset, and one evaluation set, the full table of the operation. The
engine's `heldout_acc` is then the accuracy on every point not trained on (the validation accuracy).

Splits:
- "random": a random `fraction` of the points (round(fraction * n) of them) drawn with
  `np.random.default_rng(data_seed)`.
- "thread": the split of the "a + b mod 97" challenge's generator (the thread "The grokking challenge?",
  https://discourse.numenta.org/t/the-grokking-challenge/10688, `generate_mod97_dataset(split=0.5)`): the list
  `(i, j, (i + j) % 97)` for i in range(97) (outer) and j in range(97), `random.seed(0)`, `random.shuffle`, then
  `train = data[:int(len(data) * split)]`: "half" is rounded down, 4704 of the 9409 points. A shuffle's
  permutation depends only on the list's length, so the points in the same order (x outer, y inner) shuffled by
  `random.Random(data_seed)` give exactly its split; the first int(fraction * n) train, as its `split` argument.
  The defaults (fraction 0.5, data_seed 0, p 97, +) are the challenge's; other values apply the same procedure.

Random labels (`label_seed` >= 0, for the memorizing circuit of Varma et al.): the table's labels are permuted by
`np.random.default_rng(label_seed).permutation`, the inputs unchanged, before the split; the evaluation set is the
permuted table, so nothing beyond the training points can be learned.
"""

import random
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from grokjax.errors import UserError
from grokjax.problems.base import Data
from grokjax.problems.expressions import Expression, evaluate, parse_expression
from grokjax.specs import Spec

NAMED = {"+": "x + y", "-": "x - y", "*": "x * y", "/": "x / y"}
SPLITS = ("random", "thread")
MAX_P = 46340  # p * p rows fit int32 indices


def is_prime(n: int) -> bool:
    """Trial division (n is at most MAX_P)."""
    return n >= 2 and all(n % d for d in range(2, int(n**0.5) + 1))


def thread_order(n: int, seed: int = 0) -> np.ndarray:
    """The order in which the challenge's generator (`random.seed(seed)`, `random.shuffle`) leaves a list of n
    items, as indices into the unshuffled list; a private `random.Random` leaves the global state alone."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return np.array(order, np.int64)


@dataclass(frozen=True)
class ModularProblem(Spec):
    """x `op` y mod p: `op` is one of + - * / or a polynomial in x and y (e.g. "x**3 + x*y**2 + y"); a `fraction`
    of the points trains, chosen by `split` ("random" or "thread", see the module) from `data_seed`."""

    kind: ClassVar[str] = "modular"
    p: int = 97
    op: str = "+"
    fraction: float = 0.5
    split: str = "random"
    data_seed: int = 0
    label_seed: int = -1  # >= 0: the labels permuted by this seed (random labels); -1: the operation's

    def __post_init__(self):
        if type(self.p) is not int or not 2 <= self.p <= MAX_P:
            raise UserError(f"The modulus p must be an integer in [2, {MAX_P}], got {self.p!r}.")
        if self.expression().divides and not is_prime(self.p):
            raise UserError(f"Division mod p needs a prime p, got {self.p}.")
        if not isinstance(self.fraction, (int, float)) or not 0 < self.fraction <= 1:
            raise UserError(f"The training fraction must be in (0, 1], got {self.fraction!r}.")
        if self.split not in SPLITS:
            raise UserError(f"Unknown split {self.split!r}; expected one of {', '.join(SPLITS)}.")
        if type(self.data_seed) is not int or not 0 <= self.data_seed < 2**32:
            raise UserError(f"The data seed must be an integer in [0, 2**32), got {self.data_seed!r}.")
        if type(self.label_seed) is not int or not -1 <= self.label_seed < 2**32:
            raise UserError(f"The label seed must be -1 (true labels) or an integer in [0, 2**32), got "
                            f"{self.label_seed!r}.")

    def expression(self) -> Expression:
        """The checked expression of `op` (a named operation or a polynomial); a UserError if it is neither."""
        if not isinstance(self.op, str):
            raise UserError(f"The operation must be a string (+, -, *, / or a polynomial in x and y), got {self.op!r}.")
        return parse_expression(NAMED.get(self.op, self.op))

    @property
    def name(self) -> str:
        """The evaluation set's name, e.g. 'x+y mod 97', 'x**3 + x*y**2 + y mod 97' or, with random labels,
        'x+y mod 97, labels permuted (seed 3)'."""
        name = f"{'x' + self.op + 'y' if self.op in NAMED else self.expression().source} mod {self.p}"
        return name if self.label_seed < 0 else f"{name}, labels permuted (seed {self.label_seed})"

    def train_rows(self, n: int) -> np.ndarray:
        """The sorted training rows among n points listed in the generator's order, by `split`."""
        if self.split == "random":
            pick = np.random.default_rng(self.data_seed).permutation(n)[: int(round(self.fraction * n))]
        else:
            pick = thread_order(n, self.data_seed)[: int(self.fraction * n)]
        if len(pick) == 0:
            raise UserError(f"The training set is empty: raise the fraction {self.fraction} (there are {n} points).")
        return np.sort(pick).astype(np.int32)

    def build(self) -> Data:
        """Every defined pair (row-major, x outer), the training rows, and the operation's full table."""
        p = self.p
        x, y = np.divmod(np.arange(p * p, dtype=np.int64), p)
        values, defined = evaluate(self.expression(), x, y, p)
        if not defined.any():
            raise UserError(f"{self.name} divides by zero at every point.")
        pairs = np.stack([x[defined], y[defined]], axis=1).astype(np.int32)
        labels = values[defined].astype(np.int32)
        if self.label_seed >= 0:
            labels = labels[np.random.default_rng(self.label_seed).permutation(len(labels))]
        train = self.train_rows(len(labels))
        return Data(inputs=pairs, vocab=p, n_classes=p, train_idx=train, train_labels=labels[train],
                    eval_labels=labels[None], eval_names=(self.name,),
                    summary={"p": p, "operation": self.name, "n_points": len(labels), "n_train": len(train),
                             "split": self.split, "group_names": [self.name]},
                    arrays={"pairs": pairs, "labels": labels, "train_idx": train})
