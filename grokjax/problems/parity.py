"""Concealed parity (Miller, Gleeson et al., "Measuring sharpness in grokking", 2024; the concealment of Miller,
O'Neill and Bui, "Grokking beyond neural networks", 2023): the parity of k hidden bits among n input bits, the
other n - k bits random and irrelevant to the label.

`ConcealedParityProblem` (kind "parity") builds the trainer's `Data`: `n_train + n_val` distinct bit strings drawn
uniformly with `np.random.default_rng(data_seed)`, the first `n_train` for training, the rest for validation; the
label is the XOR of the first `k` bits (an MLP's init and training are symmetric under a permutation of its inputs,
so which k positions are hidden does not matter). The model reads the bits as real-valued inputs, +1 for a set bit
and -1 for a clear one (`values="pm1"`, the convention of parity studies since Barak et al.; "01" gives 0/1).
There is one evaluation set, every point; the engine's `heldout_acc` is then the validation accuracy.
Defaults are the paper's: k = 3, n = 25 (its grid is n = 25 ... 45), 750 training and 250 validation examples.

Several numbers of bits (`n_bits` a tuple) are one sweep: the grid axis "variant" (`grokjax.problems.base.Variants`),
one problem per n with the strings it has alone, zero-padded to the largest n, and a model drawn for its own n
(`Model.init_width`), so each run trains the network of its own width on its own strings.
"""

from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np

from grokjax.errors import UserError
from grokjax.problems.base import Data, Variants
from grokjax.specs import Spec

VALUES = ("pm1", "01")
EXACT_BITS = 30
"""Up to this many bits, distinct strings are drawn exactly without replacement among the 2**n integers; above it
(at least a billion strings) they are drawn bit by bit and the rare repeats drawn again."""


def parity_labels(bits: np.ndarray, k: int) -> np.ndarray:
    """(rows,) int32: the XOR of the first `k` columns of the 0/1 `bits` (rows, n); the other columns are ignored."""
    return (np.sum(bits[:, :k], axis=1) % 2).astype(np.int32)


def distinct_bit_strings(n_bits: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """(count, n_bits) uint8: `count` distinct strings drawn uniformly without replacement (bit j of string i is
    column j)."""
    if n_bits <= EXACT_BITS:
        ints = rng.choice(2**n_bits, size=count, replace=False)
        return ((ints[:, None] >> np.arange(n_bits)) & 1).astype(np.uint8)
    rows = rng.integers(0, 2, (count, n_bits), dtype=np.uint8)
    while True:
        _, first = np.unique(rows, axis=0, return_index=True)
        if len(first) == count:
            return rows
        repeat = np.setdiff1d(np.arange(count), first)
        rows[repeat] = rng.integers(0, 2, (len(repeat), n_bits), dtype=np.uint8)


@dataclass(frozen=True)
class ConcealedParityProblem(Spec):
    """Parity of the first `k` of `n_bits` random bits; `n_train` training and `n_val` validation strings drawn
    from `data_seed`; bits given to the model as ±1 (`values="pm1"`) or 0/1 ("01")."""

    kind: ClassVar[str] = "parity"
    variant_subsets: ClassVar[bool] = False  # every number of bits trains on all its strings
    n_bits: int | tuple[int, ...] = 25
    k: int = 3
    n_train: int = 750
    n_val: int = 250
    data_seed: int = 0
    values: str = "pm1"

    def __post_init__(self):
        several = isinstance(self.n_bits, tuple)
        if several and (not self.n_bits or len(set(self.n_bits)) != len(self.n_bits)):
            raise UserError(f"Give each number of bits once, got {list(self.n_bits)}.")
        for name, value in [("n_bits", n) for n in self.bit_counts()] + [("k", self.k), ("n_train", self.n_train)]:
            if type(value) is not int or value < 1:
                raise UserError(f"The parity problem's {name.replace('_', ' ')} must be a positive integer, got {value!r}.")
        if type(self.n_val) is not int or self.n_val < 0:
            raise UserError(f"The number of validation strings must be a non-negative integer, got {self.n_val!r}.")
        fewest = min(self.bit_counts())
        if self.k > fewest:
            raise UserError(f"The parity of {self.k} hidden bits needs at least {self.k} bits, got {fewest}.")
        if self.n_train + self.n_val > 2**min(fewest, 62):
            raise UserError(f"{self.n_train + self.n_val} distinct strings of {fewest} bits do not exist "
                            f"(there are {2**fewest}).")
        if self.values not in VALUES:
            raise UserError(f"Unknown bit values {self.values!r}; expected one of {', '.join(VALUES)}.")
        if type(self.data_seed) is not int or not 0 <= self.data_seed < 2**32:
            raise UserError(f"The data seed must be an integer in [0, 2**32), got {self.data_seed!r}.")

    def bit_counts(self) -> tuple:
        """The numbers of bits swept (one, unless `n_bits` is a tuple)."""
        return self.n_bits if isinstance(self.n_bits, tuple) else (self.n_bits,)

    @property
    def n_variants(self) -> int | None:
        """The problems of the grid axis "variant": one per number of bits if `n_bits` is a tuple, else None."""
        return len(self.n_bits) if isinstance(self.n_bits, tuple) else None

    @property
    def name(self) -> str:
        """The evaluation set's name, e.g. 'parity of 3 in 25 bits' ('parity of 3 bits' over several n)."""
        return self.names()[0] if self.n_variants is None else f"parity of {self.k} bits"

    def names(self) -> tuple[str, ...]:
        """The name of each number of bits swept."""
        return tuple(f"parity of {self.k} in {n} bits" for n in self.bit_counts())

    def summary(self, **more) -> dict:
        """config.json's "task": the problem's fields, and `more`."""
        return {"n_bits": list(self.bit_counts()) if self.n_variants else self.n_bits, "k": self.k,
                "hidden_bits": list(range(self.k)), "n_train": self.n_train, "n_val": self.n_val,
                "values": self.values, "group_names": [self.name], **more}

    def build(self) -> Data:
        """The strings (training first), their labels, and the one evaluation set, every string; over several
        numbers of bits, each n's own (those of its problem alone) as `Data.variants`, padded to the widest."""
        if self.n_variants is not None:
            return self._build_variants()
        rng = np.random.default_rng(self.data_seed)
        bits = distinct_bit_strings(self.n_bits, self.n_train + self.n_val, rng)
        labels = parity_labels(bits, self.k)
        x = (2.0 * bits - 1.0 if self.values == "pm1" else bits).astype(np.float32)
        train = np.arange(self.n_train, dtype=np.int32)
        return Data(inputs=x, vocab=2, n_classes=2, train_idx=train, train_labels=labels[train],
                    eval_labels=labels[None], eval_names=(self.name,),
                    summary=self.summary(),
                    arrays={"bits": bits, "labels": labels, "train_idx": train})

    def _build_variants(self) -> Data:
        alone = [replace(self, n_bits=n).build() for n in self.n_bits]
        widest, n_points = max(self.n_bits), self.n_train + self.n_val
        inputs = np.zeros((len(alone), n_points, widest), np.float32)
        bits = np.zeros((len(alone), n_points, widest), np.uint8)
        for v, (n, d) in enumerate(zip(self.n_bits, alone)):
            inputs[v, :, :n], bits[v, :, :n] = d.inputs, d.arrays["bits"]
        labels = np.stack([d.arrays["labels"] for d in alone])
        train = alone[0].train_idx
        variants = Variants(names=self.names(), train_labels=labels[:, train],
                            train_mask=np.ones((len(alone), len(train)), bool), eval_labels=labels[:, None],
                            inputs=inputs, input_width=np.array(self.n_bits, np.int32))
        return Data(inputs=inputs[0], vocab=2, n_classes=2, train_idx=train, train_labels=labels[0, train],
                    eval_labels=labels[:1], eval_names=(self.name,), variants=variants,
                    summary=self.summary(n_train_by_variant=[self.n_train] * len(alone)),
                    arrays={"bits": bits, "n_bits": np.array(self.n_bits, np.int32), "labels": labels,
                            "train_idx": train})
