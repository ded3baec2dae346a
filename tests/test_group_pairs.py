"""Pairs of groups of one order as one sweep (the atlas's engine): each pair's intersection is a mask over the
shared table, a run does not depend on the other pairs, and it trains like the pair's own intersection sweep."""

import dataclasses

import jax
import numpy as np
import pytest

from grokjax.errors import UserError
from grokjax.models import MLP2Spec
from grokjax.problems import GroupPairsProblem, GroupsProblem
from grokjax.problems.groups import parse_group
from grokjax.run.specs import SweepConfig
from grokjax.run.sweep import run_inputs, sweep_program
from grokjax.train import Schedule

PAIRS = (("D(4)", "Z(4,2)"), ("Z(8)", "Z(4,2)"))


def config(pairs, **kw):
    problem = GroupPairsProblem(g1=tuple(p[0] for p in pairs), g2=tuple(p[1] for p in pairs))
    return SweepConfig(problem=problem, model=MLP2Spec(embed_dim=8, hidden_dim=8), n_seeds=3,
                       schedule=Schedule(length=40, log_every=10), **kw)


def train(cfg):
    keys, hparams = run_inputs(cfg)
    return jax.jit(sweep_program(cfg))(keys, hparams)


def test_each_pair_is_its_intersection_and_tables():
    data = config(PAIRS).data()
    for v, (a, b) in enumerate(PAIRS):
        t1, t2 = parse_group(a).table.reshape(-1), parse_group(b).table.reshape(-1)
        np.testing.assert_array_equal(data.variants.train_mask[v], t1 == t2)
        np.testing.assert_array_equal(data.variants.eval_labels[v], np.stack([t1, t2]))
        np.testing.assert_array_equal(data.variants.train_labels[v][t1 == t2], t1[t1 == t2])
    # D4 and Z4 x Z2 agree where h1 = 0 or x2 is fixed by x -> -x (x2 in {0, 2}): 32 + 16 of 64
    assert data.summary["n_train_by_variant"] == [48, int((parse_group("Z(8)").table == parse_group("Z(4,2)").table).sum())]


def test_a_run_ignores_the_other_pairs_and_matches_its_own_intersection_sweep():
    both = train(config(PAIRS))
    alone = train(config(PAIRS[1:]))
    n = 3
    for x, y in zip(jax.tree.leaves(both), jax.tree.leaves(alone)):
        np.testing.assert_array_equal(np.asarray(x)[n:], np.asarray(y))  # bit for bit
    plain_cfg = dataclasses.replace(config(PAIRS[:1]), problem=GroupsProblem(groups=PAIRS[0]))
    plain = train(plain_cfg)[1]
    for name in ("train_loss", "train_acc", "group_acc", "group_loss", "disagree_acc", "weight_norm"):
        np.testing.assert_allclose(getattr(both[1], name)[:n], getattr(plain, name), rtol=2e-4, atol=2e-5,
                                   err_msg=name)


def test_refusals():
    with pytest.raises(UserError, match="same order"):
        config((("D(4)", "Z(8)"), ("S(3)", "Z(6)"))).data()
    with pytest.raises(UserError, match="both the training fraction and the problem"):
        config(PAIRS, fraction_grid=(0.5, 1.0))
    with pytest.raises(UserError, match="one second group"):
        GroupPairsProblem(g1=("D(4)",), g2=())
    with pytest.raises(UserError, match="same table"):
        config((("Z(4)", "Z(4)"),)).data()
    with pytest.raises(UserError, match="full batch"):
        dataclasses.replace(config(PAIRS), schedule=Schedule(length=40, log_every=10, batch_size=8))
