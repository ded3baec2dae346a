"""Training sets checked against the groups' tables and counts worked out by hand."""

import itertools

import numpy as np
import pytest

from grokjax.errors import UserError
from grokjax.problems.groups import parse_group
from grokjax.problems.group_tasks import build_task

S4 = parse_group("S(4)")
A4Z2 = parse_group("times(A(4),Z(2))")
N = 24
# S(4) labels k + 12h as a_k o tau^h, times(A(4),Z(2)) as (a_k, h). The products
# (a1 tau^h1)(a2 tau^h2) and (a1 a2, h1 + h2) agree exactly when h1 = 0 (12 * 24 = 288
# pairs) or tau commutes with a2. The even permutations commuting with tau = (0 1) are
# e and (0 1)(2 3), so h1 = 1 adds 12 * 2 * 2 = 48 pairs: 288 + 48 = 336 of 576.
N_INTER = 336
N_REST = N * N - N_INTER  # 240


def swapped_z2_npy(path):
    """Z(2) with its labels swapped (identity 1): it disagrees with Z(2) on every pair."""
    table = np.array([[1, 0], [0, 1]])
    np.save(path, table)
    return table


def split(pairs, n=N):
    return pairs // n, pairs % n


def check_sorted_distinct(task):
    assert task.train_pairs.dtype == np.int32 and task.train_labels.dtype == np.int32
    assert (np.diff(task.train_pairs) > 0).all()


def brute_force_intersection(g, h):
    return np.array([a * g.order + b for a, b in itertools.product(range(g.order), repeat=2)
                     if g.table[a, b] == h.table[a, b]])


def test_intersection_s4_a4z2():
    task = build_task([S4, A4Z2])
    assert task.n == N and task.n_train == N_INTER
    check_sorted_distinct(task)
    a, b = split(task.train_pairs)
    assert (task.train_labels == S4.table[a, b]).all()
    assert (task.train_labels == A4Z2.table[a, b]).all()
    # Every pair outside the training set is one where the tables disagree.
    assert (task.train_pairs == brute_force_intersection(S4, A4Z2)).all()
    assert task.eval_labels.shape == (2, N * N)
    assert (task.eval_labels[0] == S4.table.ravel()).all() and (task.eval_labels[1] == A4Z2.table.ravel()).all()


def test_intersection_s3_a3z2_by_hand():
    # A(3) = {e, (012), (021)}: only e commutes with tau = (0 1). h1 = 0 gives 3 * 6 = 18
    # pairs, h1 = 1 gives 3 * 1 * 2 = 6, so 24 of the 36 pairs.
    s3, a3z2 = parse_group("S(3)"), parse_group("times(A(3),Z(2))")
    task = build_task([s3, a3z2])
    assert task.n_train == 24
    check_sorted_distinct(task)
    a, b = split(task.train_pairs, 6)
    assert (task.train_labels == s3.table[a, b]).all() and (task.train_labels == a3z2.table[a, b]).all()
    assert (task.train_pairs == brute_force_intersection(s3, a3z2)).all()


def test_single_group_intersection_is_the_whole_table():
    task = build_task([S4])
    assert (task.train_pairs == np.arange(N * N)).all() and (task.train_labels == S4.table.ravel()).all()


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.77, 1.0])
def test_intersection_fraction(fraction):
    full = build_task([S4, A4Z2])
    task = build_task([S4, A4Z2], "intersection_fraction", fraction=fraction, data_seed=1)
    assert task.n_train == round(fraction * N_INTER)
    check_sorted_distinct(task)
    assert np.isin(task.train_pairs, full.train_pairs).all()
    a, b = split(task.train_pairs)
    assert (task.train_labels == S4.table[a, b]).all()
    again = build_task([S4, A4Z2], "intersection_fraction", fraction=fraction, data_seed=1)
    assert (again.train_pairs == task.train_pairs).all() and (again.train_labels == task.train_labels).all()
    if fraction < 1:
        other = build_task([S4, A4Z2], "intersection_fraction", fraction=fraction, data_seed=2)
        assert other.n_train == task.n_train and not (other.train_pairs == task.train_pairs).all()


@pytest.mark.parametrize("iid_group", [0, 1])
def test_iid(iid_group):
    fraction = 0.3
    chosen = [S4, A4Z2][iid_group]
    task = build_task([S4, A4Z2], "iid", fraction=fraction, iid_group=iid_group, data_seed=5)
    assert task.n_train == round(fraction * N * N) == 173
    check_sorted_distinct(task)
    a, b = split(task.train_pairs)
    assert (task.train_labels == chosen.table[a, b]).all()
    # 30% of the table certainly includes pairs outside the intersection, where the groups differ.
    other = [S4, A4Z2][1 - iid_group]
    assert (task.train_labels != other.table[a, b]).any()
    again = build_task([S4, A4Z2], "iid", fraction=fraction, iid_group=iid_group, data_seed=5)
    assert (again.train_pairs == task.train_pairs).all()
    assert not (build_task([S4, A4Z2], "iid", fraction=fraction, iid_group=iid_group, data_seed=6).train_pairs
                == task.train_pairs).all()


@pytest.mark.parametrize("fractions", [(0.25, 0.5), (0.0, 0.3), (0.5, 0.5), (1.0, 0.0)])
def test_intersection_plus(fractions):
    inter = build_task([S4, A4Z2]).train_pairs
    task = build_task([S4, A4Z2], "intersection_plus", group_fractions=fractions, data_seed=3)
    check_sorted_distinct(task)
    assert np.isin(inter, task.train_pairs).all()
    a, b = split(task.train_pairs)
    s4_label, a4z2_label = S4.table[a, b], A4Z2.table[a, b]
    outside = ~np.isin(task.train_pairs, inter)
    assert (s4_label[~outside] == task.train_labels[~outside]).all()
    assert (a4z2_label[~outside] == task.train_labels[~outside]).all()
    # Outside the intersection the groups differ, so each added pair's label says which group it came from.
    assert (s4_label[outside] != a4z2_label[outside]).all()
    from_s4 = outside & (task.train_labels == s4_label)
    from_a4z2 = outside & (task.train_labels == a4z2_label)
    assert not (from_s4 & from_a4z2).any() and (from_s4 | from_a4z2)[outside].all()
    assert from_s4.sum() == round(fractions[0] * N_REST)
    assert from_a4z2.sum() == round(fractions[1] * N_REST)
    assert task.n_train == N_INTER + round(fractions[0] * N_REST) + round(fractions[1] * N_REST)


def test_intersection_plus_all_of_both_would_overlap():
    with pytest.raises(UserError, match="add up to more than the 240 pairs"):
        build_task([S4, A4Z2], "intersection_plus", group_fractions=(0.6, 0.5))
    # exactly all outside pairs is still allowed: 0.5 * 240 + 0.5 * 240 = 240
    task = build_task([S4, A4Z2], "intersection_plus", group_fractions=(0.5, 0.5))
    assert task.n_train == N * N


def assert_one_sentence(error):
    message = str(error.value)
    assert message and "\n" not in message and message.endswith(".")


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(kind="intersection_fraction", fraction=0), "must be in (0, 1], got 0"),
    (dict(kind="intersection_fraction", fraction=1.5), "must be in (0, 1], got 1.5"),
    (dict(kind="intersection_fraction", fraction=-0.2), "must be in (0, 1]"),
    (dict(kind="intersection_fraction", fraction=float("nan")), "must be in (0, 1]"),
    (dict(kind="iid", fraction=0), "must be in (0, 1]"),
    (dict(kind="iid", fraction=1.5), "must be in (0, 1]"),
    (dict(kind="iid", fraction=0.0005), "The training set is empty"),  # round(0.288) = 0 pairs
    (dict(kind="intersection_fraction", fraction=0.001), "The training set is empty"),  # round(0.336) = 0
    (dict(kind="iid", iid_group=2), "The iid group index must be in 0..1, got 2"),
    (dict(kind="iid", iid_group=-1), "The iid group index must be in 0..1, got -1"),
    (dict(kind="intersection_plus", group_fractions=(0.7, 0.7)), "add up to more than the 240 pairs"),
    (dict(kind="intersection_plus", group_fractions=(0.5,)), "needs one fraction per group (2), got 1"),
    (dict(kind="intersection_plus", group_fractions=(0.1, 0.1, 0.1)), "needs one fraction per group (2), got 3"),
    (dict(kind="intersection_plus"), "needs one fraction per group (2), got 0"),
    (dict(kind="intersection_plus", group_fractions=(1.5, 0)), "must be in (0, 1]"),
    (dict(kind="intersection_plus", group_fractions=(-0.1, 0.2)), "must be in (0, 1]"),
    (dict(kind="parity"), "Unknown task kind 'parity'"),
])
def test_bad_task_arguments(kwargs, fragment):
    with pytest.raises(UserError) as e:
        build_task([S4, A4Z2], **kwargs)
    assert fragment in str(e.value)
    assert_one_sentence(e)


def test_groups_that_agree_nowhere_give_an_empty_training_set(tmp_path):
    z2 = parse_group("Z(2)")
    swapped_z2_npy(tmp_path / "swapped.npy")
    swapped = parse_group(str(tmp_path / "swapped.npy"))
    assert not (z2.table == swapped.table).any()
    for kind, extra in [("intersection", {}), ("intersection_fraction", {"fraction": 1.0})]:
        with pytest.raises(UserError, match="The training set is empty") as e:
            build_task([z2, swapped], kind, **extra)
        assert_one_sentence(e)
    # iid and intersection_plus do not need the groups to agree.
    assert build_task([z2, swapped], "iid", fraction=1.0, iid_group=1).n_train == 4
    plus = build_task([z2, swapped], "intersection_plus", group_fractions=(0.5, 0.5))
    assert plus.n_train == 4 and (plus.train_labels != z2.table.ravel()).sum() == 2


def test_groups_of_different_orders():
    with pytest.raises(UserError, match="different orders") as e:
        build_task([S4, parse_group("Z(12)")])
    assert "24" in str(e.value) and "12" in str(e.value)
    assert_one_sentence(e)


def test_no_groups():
    with pytest.raises(UserError) as e:
        build_task([])
    assert_one_sentence(e)

