"""Total variation of the function over training: how far each run's logits and loss move between consecutive kept
checkpoints, on three point sets, computed and reduced inside one compiled program for a batch of runs.

For consecutive checkpoints t, t+1 and a point set X, one value per interval:

    l2    mean_x ||f_{t+1}(x) - f_t(x)||_2                      (Euclidean norm of the change of the logit vector)
    kl    mean_x KL(softmax f_t(x) || softmax f_{t+1}(x))       (the earlier function is the reference)
    flip  fraction of x whose argmax changed                      (ties go to the first class, as in argmax)
    loss  |L_{t+1} - L_t|, L the mean cross-entropy on X

The point sets (`POINT_SETS`) are the training points ("train", with the training labels), every point of
`Data.inputs` ("table") and the table minus the training points ("test"). On "table" and "test" the loss has one
value per evaluation set (trailing axis, in `Data.eval_names` order: each group labels the table its own way); on
"train" it is one value. A point set with no points (a training set that is the whole table has no test points)
gives NaN. The total variation over a window is the sum of the per-interval values over the intervals that lie
wholly inside it (`window_intervals`), the design note's TV = sum_t mean_x ||f_{t+1}(x) - f_t(x)||; the mean over
those intervals is saved too.

The program scans over a run's checkpoints, carrying only the previous checkpoint's logits: logits of every
checkpoint of every run are never held at once (10,000 runs x 300 checkpoints x 576 points x 24 classes).
"""

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from grokjax.errors import UserError
from grokjax.train import make_trainer

POINT_SETS = ("train", "table", "test")
MEASURES = ("l2", "kl", "flip", "loss")
DEFAULT_WINDOW = (2 / 3, 1.0)
"""The last third of training."""


def point_masks(data) -> np.ndarray:
    """(3, n_points) float32: row s is 1 on the points of POINT_SETS[s], 0 elsewhere."""
    train = np.zeros(data.n_points, bool)
    train[data.train_idx] = True
    return np.stack([train, np.ones_like(train), ~train]).astype(np.float32)


def set_means(masks, values):
    """The mean of per-point `values` (..., points) over each point set of `masks` (3, points): sum over the count,
    so a fraction of flips is exact; NaN for a set with no points."""
    return jnp.sum(masks * values[..., None, :], -1) / jnp.sum(masks, -1)


def loss_labels(data) -> np.ndarray:
    """(1 + n_sets, n_points) int32: the training labels on the training points (0 elsewhere, outside the train
    mask), then each evaluation set's labels."""
    train = np.zeros(data.n_points, np.int32)
    train[data.train_idx] = data.train_labels
    return np.concatenate([train[None], np.asarray(data.eval_labels, np.int32)])


def changes(before, after) -> dict:
    """Per point, from logits (..., classes) at two checkpoints: the L2 distance, KL(softmax before || softmax
    after) and whether the argmax changed (as 0.0 or 1.0)."""
    log_p, log_q = jax.nn.log_softmax(before), jax.nn.log_softmax(after)
    return {"l2": jnp.sqrt(jnp.sum((after - before) ** 2, -1)),
            "kl": jnp.sum(jnp.exp(log_p) * (log_p - log_q), -1),
            "flip": (jnp.argmax(before, -1) != jnp.argmax(after, -1)).astype(before.dtype)}


def losses(logits, masks, labels) -> dict:
    """Mean cross-entropy of logits (points, classes) on each point set: train against the training labels (a
    scalar), table and test against each evaluation set's labels (sets,)."""
    lse = jax.nn.logsumexp(logits, -1)
    ce = lse[None] - jnp.take_along_axis(logits[None], labels[..., None], -1)[..., 0]  # (1 + sets, points)
    train, others = set_means(masks, ce[0]), set_means(masks, ce[1:])  # (3,), (sets, 3)
    return {"train": train[0], "table": others[:, 1], "test": others[:, 2]}


def function_variation(logits_of: Callable, checkpoints, masks, labels) -> dict:
    """One run's per-interval changes: `logits_of(params) -> (points, classes)` at each checkpoint (leading axis of
    `checkpoints`); `masks` from `point_masks`, `labels` from `loss_labels`. Returns `{measure}_{point set}`
    arrays of shape (intervals,), the loss on table and test (intervals, sets)."""
    first = logits_of(jax.tree.map(lambda x: x[0], checkpoints))

    def step(before, params):
        after = logits_of(params)
        means = {k: set_means(masks, v) for k, v in changes(before, after).items()}  # (3,) each
        return after, (means, losses(after, masks, labels))

    _, (means, later) = jax.lax.scan(step, first, jax.tree.map(lambda x: x[1:], checkpoints))
    out = {f"{k}_{s}": v[:, i] for k, v in means.items() for i, s in enumerate(POINT_SETS)}
    start = losses(first, masks, labels)
    for s in POINT_SETS:
        path = jnp.concatenate([start[s][None], later[s]])
        out[f"loss_{s}"] = jnp.abs(path[1:] - path[:-1])
    return out


def variation_program(cfg) -> Callable:
    """The runner's program: checkpoint parameters (runs, checkpoints, ...) -> `function_variation` of each run,
    for the sweep config `cfg` (a `grokjax.run.specs.SweepConfig`; its model's logits on every point of its
    problem, at its matmul precision)."""
    data = cfg.problem.build()
    apply = make_trainer(data, cfg).apply
    inputs = tuple(jnp.asarray(x) for x in data.columns())
    masks, labels = jnp.asarray(point_masks(data)), jnp.asarray(loss_labels(data))
    return jax.vmap(lambda checkpoints: function_variation(lambda p: apply(p, inputs), checkpoints, masks, labels))


def check_window(window) -> tuple[float, float]:
    """The window (start, end) as fractions of training, or UserError unless 0 <= start < end <= 1."""
    start, end = (float(w) for w in window)
    if not 0 <= start < end <= 1:
        raise UserError(f"The window must be two fractions of training with 0 <= start < end <= 1, got {start:g} "
                        f"and {end:g}.")
    return start, end


def window_intervals(epochs, length: int, window=DEFAULT_WINDOW) -> np.ndarray:
    """(intervals,) booleans: the intervals between consecutive checkpoint `epochs` that lie wholly inside the
    window (fractions of the `length` of training); UserError if none does."""
    start, end = check_window(window)
    epochs = np.asarray(epochs, np.float64)
    slack = 1e-9 * length  # 2/3 of 3000 is 1999.9999999999998 in floating point
    inside = (epochs[:-1] >= start * length - slack) & (epochs[1:] <= end * length + slack)
    if not inside.any():
        raise UserError(f"No interval between the kept checkpoints (epochs {', '.join(f'{e:g}' for e in epochs)}) "
                        f"lies inside the window {start:g}-{end:g} of training: widen the window.")
    return inside


def window_totals(per_interval: dict, inside: np.ndarray) -> dict:
    """`{name}_sum` and `{name}_mean` over the intervals `inside` the window of every (runs, intervals, ...) array."""
    out = {}
    for name, values in per_interval.items():
        chosen = np.asarray(values)[:, inside]
        out[f"{name}_sum"], out[f"{name}_mean"] = chosen.sum(1), chosen.mean(1)
    return out
