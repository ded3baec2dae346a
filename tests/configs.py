"""Small configs for the tests: a tiny MLP on small groups, trained for a few epochs; relabelled group tables."""

import numpy as np

from grokjax.models import MLP2Spec
from grokjax.optim import OptimizerSpec
from grokjax.problems import GroupsProblem
from grokjax.run.specs import SweepConfig
from grokjax.train import Schedule

S3_VS_A3Z2 = ("S(3)", "times(A(3),Z(2))")


def small(groups=S3_VS_A3Z2, embed_dim=8, hidden_dim=8, epochs=30, log_every=5, keep_every=0, batch_size=0,
          model=None, problem=None, **run_and_optimizer) -> SweepConfig:
    """A SweepConfig of MLP2 (or `model`) on `groups`; optimizer fields (lr, weight_decay, kind, ...) and run
    fields (n_seeds, seeds_per_call, ...) may be given by name."""
    opt_fields = {"kind", "lr", "beta1", "beta2", "eps", "weight_decay", "momentum"}
    opt = {k: run_and_optimizer.pop(k) for k in list(run_and_optimizer) if k in opt_fields}
    return SweepConfig(problem=problem or GroupsProblem(tuple(groups)),
                       model=model or MLP2Spec(embed_dim, hidden_dim),
                       optimizer=OptimizerSpec(**opt),
                       schedule=Schedule(epochs, log_every, keep_every, batch_size), **run_and_optimizer)


def relabelled(G, seed: int):
    """G with its labels permuted at random: the table of an isomorphic group whose identity is not label 0."""
    from grokjax.problems.groups import Group

    pi = np.random.default_rng(seed).permutation(G.order)
    table = np.empty_like(G.table)
    table[np.ix_(pi, pi)] = pi[G.table]
    return Group(f"relabelled {G.name}", table)
