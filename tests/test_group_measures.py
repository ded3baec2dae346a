"""Group measures checked against character tables and facts known independently of the code."""

import numpy as np
import pytest

from grokjax.analysis.group_measures import (
    centre_size,
    character_degrees,
    commutativity_degree,
    conjugacy_classes,
    degree_power_sum,
    derived_size,
    exponent,
    group_measures,
    label_balance,
    n_classes,
)
from configs import relabelled
from grokjax.problems.groups import parse_group



@pytest.mark.parametrize("spec, degrees", [
    ("Z(1)", [1]),
    ("S(3)", [1, 1, 2]),
    ("S(4)", [1, 1, 2, 3, 3]),
    ("A(4)", [1, 1, 1, 3]),
    ("D(4)", [1, 1, 1, 1, 2]),
    ("Q(8)", [1, 1, 1, 1, 2]),
    ("Dic(3)", [1, 1, 1, 1, 2, 2]),
    ("A(5)", [1, 3, 3, 4, 5]),
    ("S(5)", [1, 1, 4, 4, 5, 5, 6]),
    ("Z(2,4,3)", [1] * 24),
])
def test_character_degrees(spec, degrees):
    G = parse_group(spec)
    assert character_degrees(G).tolist() == degrees
    assert character_degrees(relabelled(G, 0)).tolist() == degrees


def test_class_measures():
    S3 = parse_group("S(3)")
    assert sorted(map(len, conjugacy_classes(S3))) == [1, 2, 3]
    assert commutativity_degree(S3) == 0.5
    assert centre_size(parse_group("D(4)")) == 2
    assert derived_size(parse_group("S(4)")) == 12
    assert derived_size(parse_group("Z(6)")) == 1
    assert exponent(parse_group("Z(2,4)")) == 4
    assert exponent(parse_group("S(4)")) == 12
    for spec in ("D(5)", "A(4)", "Dic(4)", "times(S(3),Z(2))"):
        G = parse_group(spec)
        commuting = (G.table == G.table.T).sum()  # pairs (a, b) with ab = ba
        assert commutativity_degree(G) == pytest.approx(commuting / G.order**2)
        assert n_classes(G) == len(character_degrees(G))
        classes = conjugacy_classes(G)
        assert sorted(np.concatenate(classes).tolist()) == list(range(G.order))


def test_group_measures_of_s3():
    assert group_measures(parse_group("S(3)")) == {
        "order": 6, "n_classes": 3, "commutativity_degree": 0.5, "exponent": 6, "centre_size": 1, "derived_size": 3,
        "max_degree": 2, "sum_d1": 4, "sum_d3": 10, "sum_d4": 18}
    assert degree_power_sum([1, 1, 2, 3, 3], 2) == 24


def test_label_balance_of_z4_and_z2xz2():
    # On labels 0..3, Z(4) adds mod 4 and Z(2,2) adds bitwise mod 2 (xor): they agree unless both a and b are odd,
    # 12 pairs. Label c = a xor b is hit 4 times if c is odd and 2 times if c is even (a, a xor c both odd).
    balance = label_balance(parse_group("Z(4)"), parse_group("Z(2,2)"))
    p = np.array([2, 4, 2, 4]) / 12
    assert balance == pytest.approx({"size": 12, "normalized_entropy": -(p * np.log(p)).sum() / np.log(4),
                                     "min_max_ratio": 0.5})


def test_label_balance_of_a_semidirect_pair_is_perfect():
    # S(4) vs times(A(4),Z(2)): each label occurs |K| + |Fix φ| = 12 + 2 times among the 336 agreeing pairs.
    balance = label_balance(parse_group("S(4)"), parse_group("times(A(4),Z(2))"))
    assert balance == pytest.approx({"size": 336, "normalized_entropy": 1.0, "min_max_ratio": 1.0})
