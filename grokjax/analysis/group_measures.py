"""Candidate simplicity measures of a group, computed from its Cayley table (pure numpy).

The group-pair atlas asks which of two groups on shared labels a model generalizes to; these are the
numbers one might expect to predict it: how abelian the group is (classes, commutativity degree, centre,
derived subgroup), its exponent, and its irreducible representation degrees (the Fourier "frequencies"
a network can use). Σd² = |G| is the same for both groups of a pair, so the degree measures are the other
power sums. `label_balance` measures the intersection itself.
"""

import math

import numpy as np

from grokjax.problems.group_structure import (
    centre_size,
    class_labels,
    conjugacy_classes,
    derived_size,
    element_orders,
    identity,
    inverses,
)
from grokjax.problems.groups import Group, GroupError, intersection_mask

DEGREE_POWERS = (1, 3, 4)
"""The p of the measures sum_d<p> = Σ_i d_i^p (p = 2 would give |G|, the same for both groups of a pair)."""


def exponent(G: Group) -> int:
    """The least common multiple of the element orders (the smallest k with g^k = e for all g)."""
    return math.lcm(*(int(k) for k in np.unique(element_orders(G))))


def n_classes(G: Group) -> int:
    """The number of conjugacy classes (= the number of irreducible representations)."""
    return int(class_labels(G).max()) + 1


def commutativity_degree(G: Group) -> float:
    """The probability that two uniformly random elements commute, which equals n_classes / |G|."""
    return n_classes(G) / G.order


def _class_coefficients(G: Group, labels: np.ndarray, classes: list[np.ndarray]) -> np.ndarray:
    """a[i, j, k] = #{(x, y) in C_i x C_j : x y = z_k} for a fixed z_k in C_k: C_i C_j = Σ_k a[i, j, k] C_k."""
    r = len(classes)
    reps = np.array([c[0] for c in classes])
    y = G.table[inverses(G)[:, None], reps[None, :]]  # [x, k]: the y with x y = z_k
    coefficients = np.zeros((r, r, r), np.int64)
    np.add.at(coefficients, (labels[:, None], labels[y], np.arange(r)[None, :]), 1)
    return coefficients


def character_degrees(G: Group, tries: int = 5) -> np.ndarray:
    """The degrees of the irreducible representations, sorted, by Burnside's algorithm (numerically).

    The central characters ω_χ(C_k) = |C_k| χ(g_k) / χ(1) form, for each irreducible χ, a common eigenvector of
    the class matrices (A_i)[j, k] = a_ijk (ω_i ω_j = Σ_k a_ijk ω_k); a random combination of the A_i has
    distinct eigenvalues with probability 1, so its eigenvectors, scaled to ω(identity class) = 1, are these
    vectors. Orthogonality, Σ_g |χ(g)|² = |G|, then gives d_χ² = |G| / Σ_k |ω_k|² / |C_k|. The degrees are
    rounded and checked: integers, one per class, Σ d² = |G|.
    """
    labels, classes = class_labels(G), conjugacy_classes(G)
    sizes = np.array([len(c) for c in classes], float)
    coefficients = _class_coefficients(G, labels, classes).astype(float)
    rng = np.random.default_rng(0)
    for _ in range(tries):
        combination = np.tensordot(rng.standard_normal(len(classes)), coefficients, axes=1)
        values, vectors = np.linalg.eig(combination)
        gaps = np.abs(values[:, None] - values[None, :])
        np.fill_diagonal(gaps, np.inf)
        if gaps.min() < 1e-6 * max(1.0, np.abs(values).max()):
            continue  # a near-repeated eigenvalue: its eigenvectors are not the central characters
        omega = vectors / vectors[labels[identity(G)]]  # ω(identity class) = 1
        degrees = np.sqrt(G.order / (np.abs(omega) ** 2 / sizes[:, None]).sum(axis=0))
        rounded = np.rint(degrees).astype(np.int64)
        if np.abs(degrees - rounded).max() < 1e-6 and (rounded**2).sum() == G.order:
            return np.sort(rounded)
    raise ArithmeticError(f"Burnside's algorithm did not give integer degrees with Σd² = |G| for {G.name}.")


def degree_power_sum(degrees, p: float) -> float:
    """Σ_i d_i^p over the irreducible degrees."""
    return float(np.sum(np.asarray(degrees, float) ** p))


def group_measures(G: Group) -> dict[str, float]:
    """Every measure of one group: order, n_classes, commutativity_degree, exponent, centre_size,
    derived_size, max_degree and sum_d1, sum_d3, sum_d4."""
    degrees = character_degrees(G)
    measures = {
        "order": G.order,
        "n_classes": len(degrees),
        "commutativity_degree": len(degrees) / G.order,
        "exponent": exponent(G),
        "centre_size": centre_size(G),
        "derived_size": derived_size(G),
        "max_degree": int(degrees.max()),
    }
    measures.update({f"sum_d{p}": degree_power_sum(degrees, p) for p in DEGREE_POWERS})
    return {key: float(value) for key, value in measures.items()}


def label_balance(g1: Group, g2: Group) -> dict[str, float]:
    """How evenly the common labels are spread over the intersection of two groups on shared labels.

    The histogram counts, for each label c, the pairs (a, b) of the intersection with a*b = c. Returns
    `size` (the number of pairs), `normalized_entropy` (its entropy over log N: 1 when every label is equally
    common) and `min_max_ratio` (least count over largest; 0 when a label never occurs). They quantify the
    study's suspicion that a model trained on an unbalanced intersection never groks. Every pair
    K ⋊_φ Z(2) vs K × Z(2) on labels k + |K|*h is perfectly balanced (each label occurs |K| + |Fix φ| times),
    so these separate only pairs on other labellings.
    """
    mask = intersection_mask([g1, g2])
    if not mask.any():
        raise GroupError(f"{g1.name} and {g2.name} agree on no pair, so their intersection has no labels.")
    counts = np.bincount(g1.table[mask], minlength=g1.order)
    p = counts[counts > 0] / mask.sum()
    entropy = -(p * np.log(p)).sum()
    return {
        "size": float(mask.sum()),
        "normalized_entropy": float(entropy / np.log(g1.order)) if g1.order > 1 else 1.0,
        "min_max_ratio": float(counts.min() / counts.max()),
    }
