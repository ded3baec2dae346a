"""Groups checked against facts known independently of this code (orders, element counts, centres)."""

import itertools
import re
from pathlib import Path

import numpy as np
import pytest

import grokjax.problems.groups as groups_module
from grokjax.errors import UserError
from grokjax.problems.groups import (
    GroupError,
    alternating,
    cyclic,
    cyclic_product,
    dihedral,
    direct_product,
    intersection_mask,
    load_table,
    parse_group,
    semidirect,
    symmetric,
    twisted_cyclic,
    validate_table,
)

BUILT = ["Z(1)", "Z(7)", "Z(4,6)", "S(1)", "S(3)", "S(4)", "A(4)", "A(5)", "D(1)", "D(2)", "D(5)", "twZ(8)",
         "times(A(4),Z(2))", "semi(Z(7),Z(3),2)", "semi(Z(5),Z(4),[0,2,4,1,3])"]


def element_orders(table: np.ndarray) -> np.ndarray:
    """Order of every element (identity label 0), by repeated multiplication."""
    n = len(table)
    power, orders = np.arange(n), np.zeros(n, int)
    for k in range(1, n + 1):
        orders[(power == 0) & (orders == 0)] = k
        power = table[power, np.arange(n)]
    return orders


def brute_force_associative(table: np.ndarray) -> bool:
    return bool((table[table] == table[:, table]).all())  # [a,b,c]: (a*b)*c vs a*(b*c)


def assert_one_sentence(error: pytest.ExceptionInfo) -> None:
    message = str(error.value)
    assert "\n" not in message and message.endswith(".") and "Traceback" not in message, message


@pytest.mark.parametrize("spec, order", [("Z(7)", 7), ("Z(4,6)", 24), ("S(4)", 24), ("S(5)", 120), ("S(6)", 720),
                                         ("A(4)", 12), ("A(5)", 60), ("D(5)", 10), ("twZ(48)", 96)])
def test_orders(spec, order):
    assert parse_group(spec).order == order


@pytest.mark.parametrize("spec", BUILT)
def test_built_groups_are_groups_with_identity_zero(spec):
    table = parse_group(spec).table
    labels = np.arange(len(table))
    assert (table[0] == labels).all() and (table[:, 0] == labels).all()
    assert brute_force_associative(table)
    assert table.dtype == np.int32 and not table.flags.writeable


def test_intersection_sizes():
    s4, a4z2 = parse_group("S(4)"), parse_group("times(A(4),Z(2))")
    # S(4) and A(4) x Z(2) agree when h1 = 0 (12 * 24 = 288 pairs) or tau commutes with a2
    # (a2 in {e, (01)(23)}, so 12 * 2 * 2 = 48 pairs): 336.
    assert intersection_mask([s4, a4z2]).sum() == 336 and s4.order**2 == 576
    assert intersection_mask([symmetric(5), direct_product(alternating(5), cyclic(2))]).sum() == 7920
    # Z(48,2) and twZ(48) agree when h1 = 0 (48*2 * 96 = 4608) or 25*x2 = x2 mod 48, i.e. x2 even (48 * 24*2 = 2304).
    assert intersection_mask([cyclic_product(48, 2), twisted_cyclic(48)]).sum() == 6912


def test_intersection_mask_edge_cases():
    assert intersection_mask([cyclic(5)]).all()
    with pytest.raises(GroupError, match=r"S\(4\) \(order 24\) and Z\(12\) \(order 12\) have different orders") as e:
        intersection_mask([symmetric(4), cyclic(12)])
    assert_one_sentence(e)


def test_canonical_names():
    assert parse_group("times( A(4), Z(2) )").name == "times(A(4),Z(2))"
    assert parse_group(" semi( Z(7) ,Z(3), 2 )\n").name == "semi(Z(7),Z(3),2)"
    assert cyclic_product(48, 2).name == "Z(48,2)"
    assert semidirect(cyclic(3), 2, [0, 2, 1]).name == "semi(Z(3),Z(2),[0,2,1])"
    assert parse_group(semidirect(cyclic(3), 2, [0, 2, 1]).name).name == "semi(Z(3),Z(2),[0,2,1])"


def permutation_table(perms):
    """Reference Cayley table of a list of permutation tuples under (p*q)(x) = p(q(x)), by plain loops."""
    index = {p: i for i, p in enumerate(perms)}
    return np.array([[index[tuple(p[x] for x in q)] for q in perms] for p in perms])


def test_symmetric_and_alternating_labels():
    even = [p for p in itertools.permutations(range(4))
            if sum(p[i] > p[j] for i, j in itertools.combinations(range(4), 2)) % 2 == 0]
    with_tau = [(a[1], a[0]) + a[2:] for a in even]  # a ∘ (0 1)
    assert (alternating(4).table == permutation_table(even)).all()
    assert (symmetric(4).table == permutation_table(even + with_tau)).all()
    assert symmetric(0).order == symmetric(1).order == alternating(2).order == 1 and symmetric(2).order == 2


@pytest.mark.parametrize("n", [3, 4, 5])
def test_symmetric_is_non_abelian(n):
    table = symmetric(n).table
    assert (table != table.T).any()


def test_element_counts():
    assert (element_orders(symmetric(4).table) == 2).sum() == 9  # 6 transpositions + 3 double transpositions
    assert (element_orders(alternating(5).table) == 5).sum() == 24  # 6 subgroups of order 5, 4 generators each


def test_twisted_cyclic_centre():
    table = twisted_cyclic(48).table
    assert (table != table.T).any()
    centre = np.flatnonzero((table == table.T).all(axis=1))
    # (x,h)(y,k) = (x + 25^h y, h+k) and (y,k)(x,h) = (y + 25^k x, h+k). For all y (k = 0): 25^h y = y, so h = 0.
    # Then for k = 1: 25x = x mod 48, i.e. 24x = 0 mod 48, so x is even: 24 central elements.
    assert len(centre) == 24 and (centre % 2 == 0).all() and (centre < 48).all()


@pytest.mark.parametrize("n", [3, 5, 7])
def test_dihedral_odd_has_n_reflections(n):
    group = dihedral(n)
    squares = group.table[np.arange(2 * n), np.arange(2 * n)]
    assert group.order == 2 * n
    assert (squares == 0).sum() == n + 1  # the n reflections plus the identity square to the identity
    assert (element_orders(group.table) == 2).sum() == n


def test_semidirect_with_identity_phi_is_direct_product():
    direct = direct_product(cyclic(6), cyclic(3)).table
    assert (semidirect(cyclic(6), 3, np.arange(6)).table == direct).all()
    assert (parse_group("semi(Z(6),Z(3),1)").table == direct).all()
    assert (parse_group("semi(A(4),Z(2),1)").table == parse_group("times(A(4),Z(2))").table).all()


def test_semi_power_map_and_list_agree():
    assert (parse_group("semi(Z(5),Z(4),2)").table == parse_group("semi(Z(5),Z(4),[0,2,4,1,3])").table).all()
    assert (parse_group("semi(Z(7),Z(2),-1)").table == dihedral(7).table).all()
    assert (parse_group("semi(Z(48),Z(2),25)").table == twisted_cyclic(48).table).all()


def test_semi_rejects_bad_phi():
    with pytest.raises(UserError, match=r"not an automorphism of Z\(6\)") as e:
        parse_group("semi(Z(6), Z(2), 2)")
    assert_one_sentence(e)
    with pytest.raises(UserError, match="has order 4, which does not divide 2") as e:
        parse_group("semi(Z(5), Z(2), 2)")  # 2 has order 4 mod 5
    assert_one_sentence(e)
    with pytest.raises(UserError, match=r"not an automorphism of S\(3\)"):
        semidirect(symmetric(3), 2, [0, 1, 2, 3, 5, 4])  # swaps two elements but not consistently
    with pytest.raises(UserError, match="one integer image for each"):
        parse_group("semi(Z(5), Z(4), [0,2,4,1])")
    with pytest.raises(UserError, match="only when 4 divides n") as e:
        twisted_cyclic(6)
    assert_one_sentence(e)


def test_npy_round_trip(tmp_path, monkeypatch):
    table = symmetric(4).table
    path = tmp_path / "s4.npy"
    np.save(path, table.astype(np.int64))
    loaded = load_table(path)
    assert loaded.dtype == np.int32 and (loaded == table).all()
    assert (parse_group(f'npy("{path}")').table == table).all()
    monkeypatch.chdir(tmp_path)
    group = parse_group("s4.npy")
    assert group.name == 'npy("s4.npy")' and (group.table == table).all()
    assert intersection_mask([group, parse_group("times(A(4),Z(2))")]).sum() == 336


def test_load_table_errors(tmp_path):
    with pytest.raises(GroupError, match="does not exist") as e:
        load_table(tmp_path / "missing.npy")
    assert_one_sentence(e)
    (tmp_path / "junk.npy").write_bytes(b"not a numpy file")
    with pytest.raises(GroupError, match="not a readable .npy array") as e:
        load_table(tmp_path / "junk.npy")
    assert_one_sentence(e)
    np.save(tmp_path / "float.npy", cyclic(3).table.astype(float))
    with pytest.raises(GroupError, match="must hold integers") as e:
        load_table(tmp_path / "float.npy")
    assert_one_sentence(e)


# A loop of order 5: a Latin square with identity 0 and x*x = 0, but no group of order 5 has
# every element self-inverse, so it cannot be associative.
LOOP5 = [[0, 1, 2, 3, 4],
         [1, 0, 3, 4, 2],
         [2, 4, 0, 1, 3],
         [3, 2, 4, 0, 1],
         [4, 3, 1, 2, 0]]


def check_witness(message: str, table) -> tuple[int, int, int]:
    """The message's witness (a*b)*c != a*(b*c) must really fail in `table`."""
    a, b, c = (int(x) for x in re.search(r"is not associative: \((\d+)\*(\d+)\)\*(\d+) != ", message).groups())
    table = np.asarray(table)
    assert table[table[a, b], c] != table[a, table[b, c]]
    return a, b, c


@pytest.mark.parametrize("table, reason", [
    (LOOP5, "is not associative"),
    ([[0, 1, 2], [1, 0, 0], [2, 0, 0]], "is not associative"),  # identity and inverses, but row 1 repeats
    ((np.arange(4)[:, None] - np.arange(4)) % 4, "no two-sided identity"),  # quasigroup a - b: 0 is a right identity
    (np.tile(np.arange(3), (3, 1)), "no two-sided identity"),  # a*b = b: every element is only a left identity
    ([[0, 1], [1, 1]], "no two-sided inverse for element 1"),  # a monoid
    ([[0, 1], [1, 2]], "is not closed"),
    ([[0, 1, 2], [1, 2, 0]], "square"),
    (np.zeros((0, 0), int), "square"),
    (np.array([[0.0, 1.0], [1.0, 0.0]]), "must hold integers"),
])
def test_validation_rejects_non_groups(table, reason):
    with pytest.raises(GroupError, match=reason) as e:
        validate_table(table, "x.npy")
    assert_one_sentence(e)
    assert str(e.value).startswith("Table 'x.npy' ")
    if "associative" in reason:
        check_witness(str(e.value), table)


def test_validation_finds_non_associativity_beyond_the_first_generator():
    # Z(4) x LOOP5 (label z + 4*l): the first generator tried, (1, 0), is associative;
    # the loop part has to be reached before the failure shows.
    loop = np.array(LOOP5)
    table = (cyclic(4).table[None, :, None, :] + 4 * loop[:, None, :, None]).reshape(20, 20)
    with pytest.raises(GroupError, match="is not associative") as e:
        validate_table(table, "t")
    assert_one_sentence(e)
    assert check_witness(str(e.value), table)[1] >= 4


@pytest.mark.parametrize("spec, fragment", [
    ("__import__('os')", "Unknown group '__import__'"),
    ('os.system("x")', "Unknown group 'os.system'"),
    ("Z(", "ends early"),
    ("Z(0)", "positive integers"),
    ("Z(-3)", "positive integers"),
    ("Q8(8)", "Unknown group 'Q8' in 'Q8(8)'; expected one of Z, S, A, D, twZ, Dic, Q, times, semi, npy."),
    ("times(Z(2))", "two or more groups"),
    ("Z(3) junk", "Unexpected 'junk'"),
    ("Z(3))", "Unexpected ')'"),
    ("times(Z(2),Z(3)", "ends early; expected ')'"),
    ("", "empty"),
    ("   ", "empty"),
    ("S(20)", "too large"),
    ("Z(100,100,100)", "1000000 elements; at most 10000"),
    ("Z(1.5)", "found '1.5'"),
    ("npy('x.npy", "Unterminated string"),
    ("semi(Z(4),S(3),1)", "cyclic group Z(m)"),
    ("D(1,2)", "one positive integer"),
    ("Z(123456789012345678901234567890)", "too large"),
    ("times(" * 40 + "Z(2)" + ")" * 40, "nested"),
])
def test_parse_errors(spec, fragment):
    with pytest.raises(UserError) as e:
        parse_group(spec)
    assert fragment in str(e.value)
    assert_one_sentence(e)


def test_no_eval_in_source():
    source = Path(groups_module.__file__).read_text()
    assert "eval" not in source and "exec" not in source
