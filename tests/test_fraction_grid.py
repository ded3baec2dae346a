"""Sweeps over training fractions: nested training sets of exact sizes, random labels, and runs whose numbers do
not depend on the other fractions of the grid."""

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import jax
import numpy as np
import pytest

from configs import S3_VS_A3Z2
from grokjax.errors import UserError
from grokjax.models import OneHotMLPSpec
from grokjax.optim import OptimizerSpec
from grokjax.problems import GroupsProblem, ModularProblem
from grokjax.problems.nested import nested_data
from grokjax.run.specs import SweepConfig
from grokjax.run.storage import read_arrays
from grokjax.run.sweep import run_inputs, run_sweep, sweep_program
from grokjax.specs import Spec
from grokjax.train import Schedule

FRACTIONS = (0.2, 0.45, 0.7)
QUIET = dict(progress=False, log=lambda *_: None, cache_dir=None)


@pytest.mark.parametrize("problem", [ModularProblem(p=11, split="random", data_seed=3),
                                     ModularProblem(p=11, split="thread"),
                                     GroupsProblem(S3_VS_A3Z2, "intersection_fraction", data_seed=1)],
                         ids=["modular-random", "modular-thread", "groups-intersection"])
def test_each_fraction_trains_exactly_the_problems_own_set_and_the_sets_nest(problem):
    data = nested_data(problem, FRACTIONS)
    pool = dataclasses.replace(problem, fraction=1.0).build()
    np.testing.assert_array_equal(data.train_idx, pool.train_idx)
    previous = set()
    for f in FRACTIONS:
        own = dataclasses.replace(problem, fraction=f).build()
        active = data.train_idx[data.train_entry <= np.float32(f)]
        np.testing.assert_array_equal(active, own.train_idx)  # the same points...
        np.testing.assert_array_equal(data.train_labels[data.train_entry <= np.float32(f)], own.train_labels)
        assert previous <= set(active.tolist())  # ...inside every larger set
        previous = set(active.tolist())
    n = pool.n_train
    rule = (lambda f: int(f * n)) if getattr(problem, "split", "") == "thread" else (lambda f: round(f * n))
    assert data.summary["n_train_by_fraction"] == [rule(f) for f in FRACTIONS]


@dataclass(frozen=True)
class Reshuffled(Spec):
    """A problem whose training set is redrawn at every fraction: not nested."""

    kind: ClassVar[str] = "reshuffled"
    fraction: float = 0.5

    def build(self):
        base = ModularProblem(p=7, fraction=self.fraction, data_seed=int(self.fraction * 100))
        return base.build()


def test_sets_that_do_not_nest_are_refused():
    with pytest.raises(UserError, match="not nested"):
        nested_data(Reshuffled(), (0.3, 0.6))


def test_random_labels_are_a_fixed_permutation_per_seed_and_leave_the_inputs_alone():
    true = ModularProblem(p=13, op="*").build()
    one, again, other = (ModularProblem(p=13, op="*", label_seed=s).build() for s in (4, 4, 5))
    np.testing.assert_array_equal(one.inputs, true.inputs)
    np.testing.assert_array_equal(one.train_idx, true.train_idx)
    perm = np.random.default_rng(4).permutation(len(true.inputs))
    np.testing.assert_array_equal(one.eval_labels[0], true.eval_labels[0][perm])
    np.testing.assert_array_equal(one.train_labels, one.eval_labels[0][one.train_idx])
    np.testing.assert_array_equal(again.eval_labels, one.eval_labels)
    assert not np.array_equal(other.eval_labels, one.eval_labels)
    assert "labels permuted (seed 4)" in one.eval_names[0]
    with pytest.raises(UserError, match="label seed"):
        ModularProblem(label_seed=-2)


def config(fractions, n_seeds=2):
    return SweepConfig(problem=ModularProblem(p=7, fraction=0.5), model=OneHotMLPSpec(hidden_dim=16),
                       optimizer=OptimizerSpec(kind="adamw", lr=1e-2, weight_decay=0.1),
                       schedule=Schedule(length=20, log_every=10), n_seeds=n_seeds, seeds_per_call=2,
                       fraction_grid=fractions, weight_decay_grid=(0.1, 1.0))


def test_a_run_at_fraction_f_is_the_run_of_a_grid_of_f_alone_bit_for_bit(tmp_path):
    grid = config((0.3, 0.8))
    assert grid.n_grid == 4 and grid.grid()["fraction"] == [0.3, 0.3, 0.8, 0.8]  # the fraction varies slowest
    run_sweep(grid, tmp_path / "grid", workers=1, **QUIET)
    run_sweep(config((0.3,)), tmp_path / "one", workers=1, **QUIET)
    for name in ("traces", "seeds"):
        mine, theirs = read_arrays(tmp_path / "grid" / f"{name}.npz"), read_arrays(tmp_path / "one" / f"{name}.npz")
        for k in theirs:
            if k not in ("grid_index", "epochs"):
                assert np.array_equal(mine[k][:4], theirs[k], equal_nan=True), k
    seeds = read_arrays(tmp_path / "grid" / "seeds.npz")
    np.testing.assert_array_equal(seeds["fraction"], np.float32([0.3] * 4 + [0.8] * 4))


def test_a_masked_run_trains_like_the_problem_at_its_fraction_up_to_rounding():
    grid = dataclasses.replace(config((0.3, 0.8)), weight_decay_grid=())
    keys, hp = run_inputs(grid)
    _, masked, _ = jax.jit(sweep_program(grid))(keys, hp)
    plain = dataclasses.replace(grid, fraction_grid=(), problem=dataclasses.replace(grid.problem, fraction=0.8))
    keys, hp = run_inputs(plain)
    _, trace, _ = jax.jit(sweep_program(plain))(keys, hp)
    for name in ("train_loss", "train_acc", "weight_norm", "margin", "mean_margin", "heldout_acc", "group_acc"):
        np.testing.assert_allclose(getattr(masked, name)[2:], getattr(trace, name), rtol=2e-4, atol=2e-5,
                                   err_msg=name)


def test_fraction_grids_are_full_batch_and_need_a_fraction():
    with pytest.raises(UserError, match="full batch"):
        dataclasses.replace(config((0.3, 0.8)), schedule=Schedule(length=20, log_every=10, batch_size=4))
    with pytest.raises(UserError, match="must lie in"):
        config((0.3, 1.5))


def test_group_random_labels_are_fixed_per_pair_so_their_sets_nest():
    problem = GroupsProblem(S3_VS_A3Z2, "intersection_fraction", data_seed=1, label_seed=2)
    data = nested_data(problem, FRACTIONS)
    true = nested_data(dataclasses.replace(problem, label_seed=-1), FRACTIONS)
    np.testing.assert_array_equal(data.train_idx, true.train_idx)
    table = GroupsProblem(S3_VS_A3Z2).task_of().groups[0].table.reshape(-1)
    np.testing.assert_array_equal(data.train_labels, table[np.random.default_rng(2).permutation(table.size)][data.train_idx])
    assert not np.array_equal(data.train_labels, true.train_labels)
    with pytest.raises(UserError, match="does not depend on its fraction"):
        nested_data(GroupsProblem(S3_VS_A3Z2), (0.3, 0.6))
