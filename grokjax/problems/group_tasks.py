"""The group-table problem: training sets built from groups on shared labels, evaluated on every full table.

A task is the list of groups, the training pairs (flat indices `a * N + b` into
the N x N table) and their labels. Evaluation always covers every group's full
table. Random choices come from `data_seed`, separate from the init seeds.
`GroupsProblem` is the problem spec (kind "groups") that builds the trainer's `Data`.
"""

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from grokjax.errors import UserError
from grokjax.problems.base import Data
from grokjax.problems.groups import Group, intersection_mask, parse_group
from grokjax.specs import Spec

TASK_KINDS = ("intersection", "intersection_fraction", "iid", "intersection_plus")


@dataclass(frozen=True, eq=False)
class Task:
    """Groups on shared labels, the training pairs as flat indices and their labels."""

    groups: tuple[Group, ...]
    train_pairs: np.ndarray  # (n_train,) int32, sorted flat indices a * N + b
    train_labels: np.ndarray  # (n_train,) int32

    @property
    def n(self) -> int:
        return self.groups[0].order

    @property
    def n_train(self) -> int:
        return len(self.train_pairs)

    @property
    def eval_labels(self) -> np.ndarray:
        """(n_groups, N * N) labels of every group's full table."""
        return np.stack([g.table.reshape(-1) for g in self.groups])


def _count(fraction: float, total: int, what: str) -> int:
    if not 0 < fraction <= 1:
        raise UserError(f"The fraction of {what} must be in (0, 1], got {fraction}.")
    return int(round(fraction * total))


def _make_task(groups, pairs, labels) -> Task:
    if len(pairs) == 0:
        raise UserError("The training set is empty: raise the fraction or choose groups that agree somewhere.")
    order = np.argsort(pairs)
    return Task(tuple(groups), np.asarray(pairs, np.int32)[order], np.asarray(labels, np.int32)[order])


def build_task(groups, kind="intersection", fraction=1.0, group_fractions=(), iid_group=0, data_seed=0) -> Task:
    """Build a training set of `kind` from `groups` (which must share labels).

    - `intersection`: every pair on which all groups agree, with the common product.
    - `intersection_fraction`: a random `fraction` of the intersection.
    - `iid`: a random `fraction` of the full table of `groups[iid_group]`.
    - `intersection_plus`: the intersection plus, for each group g, a random
      `group_fractions[g]` of the pairs outside the intersection labelled by g.
      The added pairs of different groups are disjoint, so no input gets two labels.
    """
    groups = tuple(groups)
    if kind not in TASK_KINDS:
        raise UserError(f"Unknown task kind '{kind}'; expected one of {', '.join(TASK_KINDS)}.")
    agree = intersection_mask(groups).reshape(-1)
    table0 = groups[0].table.reshape(-1)
    rng = np.random.default_rng(data_seed)
    inter = np.flatnonzero(agree)
    if kind == "intersection":
        return _make_task(groups, inter, table0[inter])
    if kind == "intersection_fraction":
        pick = rng.permutation(inter)[: _count(fraction, len(inter), "the intersection")]
        return _make_task(groups, pick, table0[pick])
    if kind == "iid":
        if not 0 <= iid_group < len(groups):
            raise UserError(f"The iid group index must be in 0..{len(groups) - 1}, got {iid_group}.")
        table = groups[iid_group].table.reshape(-1)
        pick = rng.permutation(table.size)[: _count(fraction, table.size, "the table")]
        return _make_task(groups, pick, table[pick])
    if len(group_fractions) != len(groups):
        raise UserError(f"intersection_plus needs one fraction per group ({len(groups)}), got {len(group_fractions)}.")
    rest = rng.permutation(np.flatnonzero(~agree))
    counts = [_count(f, len(rest), "a group's own pairs") if f else 0 for f in group_fractions]
    if sum(counts) > len(rest):
        raise UserError(f"The per-group fractions add up to more than the {len(rest)} pairs outside the intersection.")
    pairs, labels, start = [inter], [table0[inter]], 0
    for group, count in zip(groups, counts):
        own = rest[start : start + count]
        pairs.append(own)
        labels.append(group.table.reshape(-1)[own])
        start += count
    return _make_task(groups, np.concatenate(pairs), np.concatenate(labels))


@dataclass(frozen=True)
class GroupsProblem(Spec):
    """Groups on shared labels (specs of `grokjax.problems.groups.parse_group`) and the training set to draw.

    Defaults are the published ambiguous task: S(4) vs A(4) x Z(2) on their whole intersection. With
    `label_seed` >= 0 the training labels are random (Varma et al.'s memorizing circuit): every pair's label is
    that of the first group's table permuted by `np.random.default_rng(label_seed)`, fixed per pair whatever the
    training set; the evaluation sets stay the groups' tables.
    """

    kind: ClassVar[str] = "groups"
    groups: tuple[str, ...] = ("S(4)", "times(A(4),Z(2))")
    task: str = "intersection"
    fraction: float = 1.0
    group_fractions: tuple[float, ...] = ()
    iid_group: int = 0
    data_seed: int = 0
    label_seed: int = -1

    def __post_init__(self):
        if not self.groups:
            raise UserError("At least one group is needed.")
        if not 0 <= self.data_seed < 2**32:
            raise UserError(f"The data seed must be an integer in [0, 2**32), got {self.data_seed}.")
        if type(self.label_seed) is not int or not -1 <= self.label_seed < 2**32:
            raise UserError(f"The label seed must be -1 (true labels) or an integer in [0, 2**32), got "
                            f"{self.label_seed!r}.")

    def task_of(self) -> Task:
        """Parse the groups and build the training set; every bad input is a UserError."""
        return build_task([parse_group(s) for s in self.groups], self.task, self.fraction, self.group_fractions,
                          self.iid_group, self.data_seed)

    def build(self) -> Data:
        """The trainer's view: every pair of the N x N table (row a * N + b), the training pairs, every group's table."""
        task = self.task_of()
        n = task.n
        pairs = np.stack(np.divmod(np.arange(n * n, dtype=np.int32), np.int32(n)), axis=1)
        names = tuple(g.name for g in task.groups)
        labels = task.train_labels
        if self.label_seed >= 0:
            table = task.groups[0].table.reshape(-1)
            labels = table[np.random.default_rng(self.label_seed).permutation(table.size)][task.train_pairs]
        return Data(inputs=pairs, vocab=n, n_classes=n, train_idx=task.train_pairs, train_labels=labels,
                    eval_labels=task.eval_labels, eval_names=names,
                    summary={"n": n, "n_train": task.n_train, "group_names": list(names)},
                    arrays={"train_pairs": task.train_pairs, "train_labels": labels,
                            "tables": np.stack([g.table for g in task.groups])})
