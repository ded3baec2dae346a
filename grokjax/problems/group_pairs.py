"""Many pairs of groups of one order, each trained on its intersection, as one sweep: the groups are data.

Pair v is (`g1[v]`, `g2[v]`) on shared labels (specs of `grokjax.problems.groups.parse_group`), trained on the
pairs (a, b) where the two tables agree, labelled with the common product, and evaluated on both full tables. Every
pair of a sweep has the same order N, so every run sees the same N x N inputs: the pool is the whole table and
pair v is the grid axis "variant" (`grokjax.problems.base.Variants`), its intersection a mask and its tables its
evaluation sets. The pool does not depend on which pairs are swept, so a run's numbers do not either; they equal,
up to float32 rounding of a masked sum, those of the pair's own intersection sweep (`GroupsProblem`).
"""

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from grokjax.errors import UserError
from grokjax.problems.base import Data, Variants
from grokjax.problems.groups import parse_group
from grokjax.specs import Spec

SET_NAMES = ("G1", "G2")
"""The evaluation sets of every pair: its first and its second group's table."""


@dataclass(frozen=True)
class GroupPairsProblem(Spec):
    """Pairs of groups of one order (`g1[v]` vs `g2[v]`), each trained on its whole intersection."""

    kind: ClassVar[str] = "group_pairs"
    variant_subsets: ClassVar[bool] = True  # each pair trains on its own intersection
    g1: tuple[str, ...] = ("S(4)",)
    g2: tuple[str, ...] = ("times(A(4),Z(2))",)

    def __post_init__(self):
        if not self.g1 or len(self.g1) != len(self.g2):
            raise UserError(f"Give one second group for each first group (got {len(self.g1)} and {len(self.g2)}).")

    @property
    def n_variants(self) -> int:
        return len(self.g1)

    def names(self) -> tuple[str, ...]:
        return tuple(f"{a} vs {b}" for a, b in zip(self.g1, self.g2))

    def tables(self) -> np.ndarray:
        """(pairs, 2, N, N) Cayley tables; groups of different orders, or a pair that agrees nowhere, is a UserError."""
        groups = [(parse_group(a), parse_group(b)) for a, b in zip(self.g1, self.g2)]
        orders = sorted({g.order for pair in groups for g in pair})
        if len(orders) > 1:
            raise UserError(f"Every group of a sweep over pairs must have the same order, got orders "
                            f"{', '.join(map(str, orders))}: sweep each order separately.")
        tables = np.stack([np.stack([a.table, b.table]) for a, b in groups]).astype(np.int32)
        empty = [name for name, t in zip(self.names(), tables) if not (t[0] == t[1]).any()]
        if empty:
            raise UserError(f"The groups of {empty[0]} agree on no product, so there is nothing to train on.")
        same = [name for name, t in zip(self.names(), tables) if (t[0] == t[1]).all()]
        if same:
            raise UserError(f"The groups of {same[0]} have the same table, so there is no choice to study.")
        return tables

    def build(self) -> Data:
        """Every pair (a, b) of the N x N table (row a * N + b) as the pool; per pair its intersection and tables."""
        tables = self.tables()
        n = tables.shape[-1]
        sets = tables.reshape(len(tables), 2, n * n)
        mask = sets[:, 0] == sets[:, 1]
        pairs = np.stack(np.divmod(np.arange(n * n, dtype=np.int32), np.int32(n)), axis=1)
        variants = Variants(names=self.names(), train_labels=sets[:, 0], train_mask=mask, eval_labels=sets)
        return Data(inputs=pairs, vocab=n, n_classes=n, train_idx=np.arange(n * n, dtype=np.int32),
                    train_labels=sets[0, 0], eval_labels=sets[0], eval_names=SET_NAMES, variants=variants,
                    summary={"n": n, "pairs": list(self.names()), "n_train_by_variant": mask.sum(1).tolist(),
                             "group_names": list(SET_NAMES)},
                    arrays={"tables": tables, "train_mask": mask})
