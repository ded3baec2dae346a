"""Perturbation sensitivity: noise added to a run's parameters at a kept checkpoint, training continued to the end.

When is a seed's fate decided? Copies of a run are perturbed at epoch e and trained on; if their outcome still
matches the run's, the fate was sealed by e. Noise is drawn per parameter tensor (biases included), as the
ambiguous-grokking study drew it:

- "sphere": a Gaussian direction scaled to Euclidean norm `scale` (the study's noise),
- "normal": i.i.d. N(0, scale^2) entries,
- "init": a fresh draw of the model's initialization, times `scale`.

Copy c of run i at epoch e draws with the key `fold_in(fold_in(fold_in(fold_in(PRNGKey(seed), i), e), PERTURB_TAG),
c)`, tensor l of it with `fold_in(that, l)`: a copy's noise ignores which other copies run, and copy c has the same
direction at every scale (common random numbers: along the scale axis only the scale changes). Scale 0 leaves the
parameters bit for bit as they were, so with the optimizer state carried over a copy retraces the run.

`perturb_program` is the runner's program: every copy of a call perturbed, trained on by the sweep's own
continuation (`grokjax.run.states.continue_program`: the optimizer fresh, as the study restarted it, or carried
over), and summarized by its final metrics and the distance of its final function from the unperturbed run's.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from grokjax.errors import UserError
from grokjax.run.states import continue_program
from grokjax.train import make_trainer

PERTURB_TAG = 0x9E7
"""Folded into a run's key at the checkpoint before the copy index, apart from the sweep's and the LLC's keys."""
NOISE_KINDS = ("sphere", "normal", "init")
PUBLISHED_SCALES = (0.0, *(2.0 ** np.arange(-25, 6, 2)))
"""The study's scale sweep: 0 and 2^-25, 2^-23, ..., 2^5."""


def noise(kind: str, params, key, scale, init=None):
    """Noise shaped like `params` (one model): per tensor a direction of norm `scale` ("sphere"), i.i.d. N(0,
    scale^2) entries ("normal") or `scale` times `init(key)`, a fresh initialization ("init")."""
    if kind not in NOISE_KINDS:
        raise UserError(f"Unknown noise '{kind}'; expected one of {', '.join(NOISE_KINDS)}.")
    leaves, tree = jax.tree.flatten(params)
    if kind == "init":
        return jax.tree.map(lambda x: scale * x, init(key))
    drawn = []
    for i, x in enumerate(leaves):
        g = jax.random.normal(jax.random.fold_in(key, i), x.shape, x.dtype)
        drawn.append(scale * (g / jnp.linalg.norm(g) if kind == "sphere" else g))
    return jax.tree.unflatten(tree, drawn)


def copy_keys(seed: int, runs, epoch: int, copies: int) -> np.ndarray:
    """(runs, copies) keys of the copies of `runs` perturbed at `epoch` (see the module docstring)."""
    base = jax.random.PRNGKey(seed)

    def per_run(i):
        at = jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(base, i), epoch), PERTURB_TAG)
        return jax.vmap(lambda c: jax.random.fold_in(at, c))(jnp.arange(copies, dtype=jnp.uint32))

    return np.asarray(jax.jit(jax.vmap(per_run))(jnp.asarray(runs, jnp.uint32)))


class CopyResult(NamedTuple):
    """A perturbed copy at the end of training: its final metrics, and how far its function is from the run's."""

    train_loss: jax.Array
    train_acc: jax.Array
    group_loss: jax.Array  # (..., sets)
    group_acc: jax.Array  # (..., sets)
    weight_norm: jax.Array
    margin: jax.Array
    distance: jax.Array  # fraction of all points where its argmax differs from the unperturbed run's final one
    diverged: jax.Array  # its final loss or parameters are not finite


def perturb_program(cfg, n_logs: int, fresh_optimizer: bool, kind: str):
    """The runner's program: `(states, hparams, keys, scales, reference) -> CopyResult` for a batch of copies.

    `states` are the runs' `TrainState`s at one checkpoint (all at the same step), `reference` the unperturbed
    runs' final parameters; each copy is trained `n_logs` x log_every more units (to the end of the schedule)."""
    data = cfg.problem.build()
    trainer = make_trainer(data, cfg)
    train_on = continue_program(cfg, n_logs, fresh_optimizer)
    points = data.columns()
    model_init = lambda key: trainer.init(key).params

    def perturbed(params, key, scale):
        return jax.tree.map(jnp.add, params, noise(kind, params, key, scale, model_init))

    def batch(states, hparams, keys, scales, reference):
        states = states._replace(params=jax.vmap(perturbed)(states.params, keys, scales))
        final, trace = train_on(states, hparams)
        last = jax.tree.map(lambda x: x[:, -1], trace)
        argmax = lambda p: jnp.argmax(trainer.apply(p, points), -1)
        distance = jnp.mean(jax.vmap(argmax)(final.params) != jax.vmap(argmax)(reference), -1)
        finite = jnp.isfinite(last.train_loss) & jnp.all(jnp.stack(
            [jnp.all(jnp.isfinite(x), axis=tuple(range(1, x.ndim))) for x in jax.tree.leaves(final.params)]), 0)
        return CopyResult(last.train_loss, last.train_acc, last.group_loss, last.group_acc, last.weight_norm,
                          last.margin, distance, ~finite)

    return batch
