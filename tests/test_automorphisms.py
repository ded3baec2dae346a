"""Automorphisms, isomorphism and the pair atlas, checked against group theory known independently of the code."""

import itertools
import math

import numpy as np
import pytest

from grokjax.problems.group_structure import centre_size, conjugacy_classes, derived_size, element_orders
from grokjax.problems.automorphisms import (
    are_isomorphic,
    automorphisms,
    enumerate_pairs,
    involution_classes,
    pairs_from_specs,
    semidirect_pair,
    small_groups,
)
from configs import relabelled
from grokjax.problems.groups import Group, GroupError, alternating, parse_group, symmetric, twisted_cyclic



def composition_group(autos: np.ndarray) -> Group:
    """Aut(K) as a group: label i is autos[i], product (φ_i ∘ φ_j)(x) = φ_i(φ_j(x))."""
    index = {row.tobytes(): i for i, row in enumerate(autos)}
    table = [[index[autos[i][autos[j]].tobytes()] for j in range(len(autos))] for i in range(len(autos))]
    return Group("Aut", np.array(table))


def is_automorphism(K: Group, phi: np.ndarray) -> bool:
    return len(np.unique(phi)) == K.order and (K.table[phi[:, None], phi[None, :]] == phi[K.table]).all()


def test_dicyclic_and_quaternion():
    q8 = parse_group("Q(8)")
    assert q8.name == "Q(8)" and np.array_equal(q8.table, parse_group("Dic(2)").table)
    assert sorted(element_orders(q8)) == [1, 2, 4, 4, 4, 4, 4, 4]  # ±1, then ±i, ±j, ±k
    for n in (2, 3, 5):
        G = parse_group(f"Dic({n})")
        assert G.order == 4 * n and list(np.flatnonzero(element_orders(G) == 2)) == [n]  # the only involution: a^n
        assert not (G.table == G.table.T).all()
    assert are_isomorphic(parse_group("Dic(3)"), parse_group("semi(Z(3),Z(4),2)"))  # Dic3 = Z3 ⋊ Z4 by inversion
    for spec in ("Q(6)", "Dic(1)", "Q(8,2)"):
        with pytest.raises(GroupError):
            parse_group(spec)


@pytest.mark.parametrize("n", [1, 2, 7, 8, 12, 15, 48])
def test_automorphisms_of_cyclic_groups_are_the_units(n):
    units = [u for u in range(1, n + 1) if math.gcd(u, n) == 1]  # φ(n) of them: x -> u x
    expected = sorted(tuple(u * x % n for x in range(n)) for u in units)
    assert [tuple(row) for row in automorphisms(parse_group(f"Z({n})"))] == expected


def test_automorphisms_match_brute_force_for_every_group_of_order_at_most_8():
    for spec in small_groups(8):
        K = parse_group(spec)
        perms = np.array([(0, *p) for p in itertools.permutations(range(1, K.order))])  # label 0 is the identity
        keep = (K.table[perms[:, :, None], perms[:, None, :]] == perms[:, K.table]).all(axis=(1, 2))
        assert np.array_equal(automorphisms(K), perms[keep]), spec


@pytest.mark.parametrize("spec, size, like", [
    ("Z(2,2)", 6, "S(3)"),  # GL(2,2) ≅ S3
    ("Z(2,2)", 6, "D(3)"),
    ("Q(8)", 24, "S(4)"),
    ("D(4)", 8, "D(4)"),
    ("A(4)", 24, "S(4)"),
    ("Z(2,2,2)", 168, None),  # |GL(3,2)|
    ("Z(2,2,2,2)", 20160, None),  # |GL(4,2)|
])
def test_automorphism_groups(spec, size, like):
    K = parse_group(spec)
    autos = automorphisms(K)
    assert autos.shape == (size, K.order) and len(np.unique(autos, axis=0)) == size
    assert np.array_equal(autos[0], np.arange(K.order))
    assert all(is_automorphism(K, phi) for phi in autos[:: max(1, size // 50)])
    if like:
        assert are_isomorphic(composition_group(autos), parse_group(like))


@pytest.mark.parametrize("spec, count", [
    ("Z(2)", 0), ("Z(2,2)", 1), ("Z(2,2,2)", 1),  # GL(3,2) has one class of involutions (21 transvections)
    ("D(4)", 3),  # Aut(D4) ≅ D4: involution classes {r²}, {s, sr²}, {sr, sr³}
    ("Q(8)", 2), ("A(4)", 2), ("S(4)", 2),  # Aut ≅ S4: transpositions, double transpositions
])
def test_involution_classes(spec, count):
    K = parse_group(spec)
    classes = involution_classes(K)
    assert len(classes) == count
    for phi in classes:
        assert is_automorphism(K, phi) and (phi[phi] == np.arange(K.order)).all() and (phi != np.arange(K.order)).any()


@pytest.mark.parametrize("n", [8, 12, 15, 24, 48])
def test_involution_classes_of_cyclic_groups(n):
    # Aut(Z_n) is abelian, so every involution x -> u x (u² ≡ 1 mod n, u != 1) is a class of its own.
    roots = [u for u in range(2, n) if u * u % n == 1]
    classes = involution_classes(parse_group(f"Z({n})"))
    assert sorted(int(phi[1]) for phi in classes) == roots


def test_pairs_reproduce_the_reference_pairs():
    # A(4) labels the even permutations of 0..3 in lexicographic order; φ is conjugation by τ = (0 1).
    even = [p for p in itertools.permutations(range(4)) if np.linalg.det(np.eye(4)[list(p)]) > 0]  # sign = det
    index = {p: i for i, p in enumerate(even)}
    tau = (1, 0, 2, 3)
    phi = [index[tuple(tau[a[tau[x]]] for x in range(4))] for a in even]
    pair = semidirect_pair("A(4)", phi)
    g1, g2 = pair.groups()
    assert np.array_equal(g1.table, symmetric(4).table)
    assert np.array_equal(g2.table, parse_group("times(A(4),Z(2))").table)
    assert (pair.k_spec, pair.order, pair.intersection, pair.g2_spec) == ("A(4)", 24, 336, "times(A(4),Z(2))")
    assert [p.name for p in enumerate_pairs(24, ["A(4)"])] == [pair.name]  # conjugation by (01)(23) is inner: skipped

    pair = semidirect_pair("Z(48)", 25 * np.arange(48) % 48)
    g1, g2 = pair.groups()
    assert np.array_equal(g1.table, twisted_cyclic(48).table)
    assert np.array_equal(g2.table, parse_group("Z(48,2)").table)
    assert (pair.order, pair.intersection) == (96, 6912)
    assert pair.name in [p.name for p in enumerate_pairs(96, ["Z(48)"])]

    explicit = pairs_from_specs([("S(4)", "times(A(4),Z(2))"), ("Z(48,2)", "twZ(48)")])
    assert [(p.k_spec, p.phi, p.order, p.intersection) for p in explicit] == [("", (), 24, 336), ("", (), 96, 6912)]


def test_are_isomorphic():
    assert not are_isomorphic(parse_group("Z(4)"), parse_group("Z(2,2)"))
    assert are_isomorphic(parse_group("D(3)"), parse_group("S(3)"))
    assert are_isomorphic(parse_group("times(Z(2),Z(3))"), parse_group("Z(6)"))
    assert not are_isomorphic(parse_group("D(4)"), parse_group("Q(8)"))
    assert not are_isomorphic(parse_group("Z(8)"), parse_group("Z(9)"))
    for seed, G in enumerate([symmetric(4), alternating(5), parse_group("times(Dic(3),Z(2))")]):
        assert are_isomorphic(G, relabelled(G, seed))
    # Z4 ⋊ Z4 and Q8 x Z2 share element orders, class sizes, centre and derived subgroup, yet are not isomorphic.
    G, H = parse_group("semi(Z(4),Z(4),3)"), parse_group("times(Q(8),Z(2))")
    assert sorted(element_orders(G)) == sorted(element_orders(H))
    assert sorted(map(len, conjugacy_classes(G))) == sorted(map(len, conjugacy_classes(H)))
    assert (centre_size(G), derived_size(G)) == (centre_size(H), derived_size(H))
    assert not are_isomorphic(G, H)


def test_small_groups_hold_every_group_up_to_order_15():
    specs = small_groups(15)
    orders = [parse_group(spec).order for spec in specs]
    assert orders == sorted(orders)
    # The number of groups of order 2..15 (OEIS A000001).
    assert [orders.count(n) for n in range(2, 16)] == [1, 1, 2, 1, 2, 1, 5, 2, 2, 1, 5, 1, 2, 1]
    assert specs[:7] == ["Z(2)", "Z(3)", "Z(4)", "Z(2,2)", "Z(5)", "Z(6)", "D(3)"]  # first spellings kept
    groups = [parse_group(spec) for spec in specs]
    assert not any(are_isomorphic(a, b) for a, b in itertools.combinations(groups, 2) if a.order == b.order)


def test_enumerate_pairs_by_hand():
    # K runs over the groups of order <= 6: Z2, Z3, Z4, Z(2,2), Z5, Z6, D3.
    #   Z2: Aut is trivial, no pair.  Z3, Z4, Z5, Z6: the only involution is x -> -x (u² ≡ 1 mod n),
    #   giving D(n) vs Z(n,2).  Z(2,2): Aut = GL(2,2) ≅ S3, one class (swap two non-identity elements),
    #   G1 ≅ D4 vs Z(2,2,2).  D3: every automorphism is conjugation, by an involution when of order 2, so
    #   G1 ≅ D3 x Z2 = G2 and the pair is skipped.
    # The intersection is 2|K|(|K| + |Fix φ|), with |Fix| = 1, 2, 2, 1, 2 for Z3, Z4, Z(2,2), Z5, Z6.
    pairs = enumerate_pairs(12)
    assert [(p.name, p.order, p.intersection) for p in pairs] == [
        ("Z(3):phi1", 6, 24), ("Z(4):phi1", 8, 48), ("Z(2,2):phi1", 8, 48), ("Z(5):phi1", 10, 60),
        ("Z(6):phi1", 12, 96)]
    assert are_isomorphic(pairs[1].groups()[0], parse_group("D(4)"))
    assert are_isomorphic(pairs[2].groups()[0], parse_group("D(4)"))
    for p in pairs:
        g1, g2 = p.groups()
        assert g1.name == p.g1_spec == f"semi({p.k_spec},Z(2),[{','.join(map(str, p.phi))}])"
        assert g2.name == p.g2_spec == f"times({p.k_spec},Z(2))"
        assert not are_isomorphic(g1, g2)


def test_pair_errors():
    with pytest.raises(GroupError):
        enumerate_pairs(8, ["Z(5)"])  # pairs of order 10
    with pytest.raises(GroupError):
        semidirect_pair("Z(4)", [0, 1, 2, 3])  # the identity: both groups are Z(4,2)
    with pytest.raises(GroupError):
        semidirect_pair("Z(5)", [0, 2, 4, 1, 3])  # x -> 2x has order 4
    with pytest.raises(GroupError):
        pairs_from_specs([("Z(4)", "Z(6)")])
