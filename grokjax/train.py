"""One pure training function per (run key, problem data, config); everything else transforms it.

`make_trainer(data, cfg)` returns a `Trainer` of pure functions: `init(key, hparams=None) -> state`,
`advance(state, hparams, n_logs) -> (state, trace)` and `train(key, hparams) -> (state, trace, kept states)`,
the whole run. `cfg` gives the model, optimizer, schedule and matmul precision (a `grokjax.run.specs.SweepConfig`).
Training is `lax.scan` over schedule units (epochs or optimizer steps) with metrics every `log_every` units (a
nested scan). Full batch is the default; with `batch_size` B every epoch draws a fresh permutation of the
training points from the run's data-order key `fold_in(run key, ORDER_TAG)` and takes ceil(n_train / B) steps,
the last one smaller (PyTorch's DataLoader with shuffle=True, drop_last=False). Hyperparameters that a sweep may
vary (learning rate, weight decay) are arrays in `hparams`, not constants, so changing them does not recompile.
So is the training fraction of a sweep over fractions (`Data.train_entry`): every run sees the same pool of
points and trains, full batch, on those with `train_entry <= hparams["fraction"]`, a mask; its metrics (train
loss, accuracy and margin, held-out accuracy) are of its own training set. Likewise a sweep over problems on the
same points (`Data.variants`): run `hparams["variant"]` trains on its variant's mask of the pool (full batch,
unless every variant trains on the whole pool) with its labels and inputs, and is evaluated on its variant's sets;
with inputs of several widths, its model is drawn for its own width (`Model.init_width`).
"""

from dataclasses import dataclass
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from grokjax.errors import UserError
from grokjax.losses import LOSSES
from grokjax.models.base import weight_norm
from grokjax.optim import make_optimizer
from grokjax.problems.base import Data
from grokjax.rng import use_straight_threefry
from grokjax.specs import Spec

UNITS = ("epochs", "steps")
ORDER_TAG = 0x0D0
"""Folded into a run's key for its data order, so the minibatch order is not drawn from the key of its init."""
use_straight_threefry()  # every random draw of training and the analyses, same bits, no loop per draw


@dataclass(frozen=True)
class Schedule(Spec):
    """How long to train and when to log and keep the state; defaults are the published run (3000 full-batch
    epochs, metrics every 10).

    `length` counts schedule units: epochs, or optimizer steps with `unit="steps"` (then `log_every` and
    `keep_every` count steps too). `batch_size` 0 is full batch (one step per epoch). `keep_every` K also keeps
    the whole training state (parameters and optimizer state) every K units; `warmup_steps` raises the learning
    rate linearly over that many optimizer steps.
    """

    length: int = 3000
    log_every: int = 10
    keep_every: int = 0
    batch_size: int = 0
    unit: str = "epochs"
    warmup_steps: int = 0

    def __post_init__(self):
        for name, what in (("length", f"number of {self.unit}"), ("log_every", "log interval")):
            if getattr(self, name) < 1:
                raise UserError(f"The {what} must be a positive integer, got {getattr(self, name)}.")
        if self.length % self.log_every:
            raise UserError(f"The number of {self.unit} ({self.length}) must be a multiple of the log interval ({self.log_every}).")
        if self.keep_every < 0 or self.keep_every % self.log_every or (self.keep_every and self.length % self.keep_every):
            raise UserError(f"The checkpoint interval ({self.keep_every}) must be a multiple of the log interval "
                            f"({self.log_every}) that divides the number of {self.unit} ({self.length}).")
        if self.unit not in UNITS:
            raise UserError(f"Unknown schedule unit '{self.unit}'; expected one of {', '.join(UNITS)}.")
        if self.batch_size < 0 or self.warmup_steps < 0:
            raise UserError("The batch size and warmup steps must be non-negative integers (batch size 0: full batch).")
        if self.unit == "steps" and not self.batch_size:
            raise UserError("A schedule in optimizer steps needs a batch size (full batch: one step is one epoch).")

    @property
    def n_logs(self) -> int:
        return self.length // self.log_every

    def steps_per_epoch(self, n_train: int) -> int:
        return -(-n_train // self.batch_size) if self.batch_size else 1

    def steps_per_unit(self, n_train: int) -> int:
        return 1 if self.unit == "steps" else self.steps_per_epoch(n_train)


class TrainState(NamedTuple):
    params: dict
    opt_state: optax.OptState
    epoch: jax.Array  # optimizer steps done so far (with full batch, epochs)
    fit_epoch: jax.Array  # full batch: first epoch with train accuracy 1, or -1 (minibatches: -1, see the sweep)
    order_key: jax.Array  # the run's data-order key (unused with full batch)


class Metrics(NamedTuple):
    """Metrics at one logged time; `group_*` and `disagree_acc` have a trailing axis, one per evaluation set (a
    group's table). `heldout_acc` is the accuracy on the points where every set agrees that are not trained on
    (the held-out part of an intersection), `disagree_acc` each set's accuracy on the points where the sets
    disagree; NaN where there are no such points."""

    train_loss: jax.Array
    train_acc: jax.Array
    group_loss: jax.Array
    group_acc: jax.Array
    weight_norm: jax.Array
    margin: jax.Array  # the smallest over training points of (true logit - the largest other logit)
    heldout_acc: jax.Array
    disagree_acc: jax.Array
    mean_margin: jax.Array  # the mean of the same over training points (the logit scale of circuit efficiency)


class RunProblem(NamedTuple):
    """What one run trains and is evaluated on (see `make_trainer`'s `run_problem`)."""

    labels: jax.Array  # (n_train,) the training labels of the pool
    active: jax.Array | None  # (n_train,) bool: the pool points it trains on (None: all)
    sets: jax.Array  # (n_sets, n_points) its evaluation sets' labels
    train_in: tuple  # the model's inputs at the pool points
    full_in: tuple  # the model's inputs at every point


class Trainer(NamedTuple):
    """Pure functions of one run; see `make_trainer`."""

    init: Callable  # (key, hparams=None) -> TrainState at epoch 0 (hparams: the run's variant, if inputs vary)
    start: Callable  # (params, order_key=None) -> TrainState with fresh optimiser state
    step: Callable  # (state, hparams) -> state after one optimizer update
    advance: Callable  # (state, hparams, n_logs) -> (state, Metrics trace)
    train: Callable  # (key, hparams) -> (final state, trace including time 0, kept states or None)
    metrics: Callable  # (params, hparams=None) -> Metrics (the run's fraction or variant from `hparams`)
    apply: Callable  # (params, inputs) -> logits
    loss: Callable  # (params, active=None, labels=None, inputs=None) -> (mean train loss, every train point
    # correct), over the `active` pool points with `labels` and `inputs` (default: all, the problem's)


def make_trainer(data: Data, cfg) -> Trainer:
    """Pure functions that train one run of `cfg` (model, optimizer, schedule, matmul precision) on `data`."""
    sched, n_train = cfg.schedule, data.n_train
    model = cfg.model.build(data)
    train_in, full_in = data.columns(data.train_idx), data.columns()
    train_y, train_idx = jnp.asarray(data.train_labels), jnp.asarray(data.train_idx)
    eval_y = jnp.asarray(data.eval_labels)
    heldout_idx, disagree_idx = point_subsets(data)
    entry = None if data.train_entry is None else jnp.asarray(data.train_entry)
    variants = data.variants
    subsets = entry is not None or (variants is not None and not variants.train_mask.all())
    if subsets and sched.batch_size:
        raise UserError("A sweep over training fractions or problems on different subsets of the points trains full "
                        "batch (minibatches of per-run subsets are not supported).")
    if entry is not None and variants is not None:
        raise UserError("A sweep cannot vary both the training fraction and the problem.")
    agree = np.all(data.eval_labels == data.eval_labels[:1], 0)
    variant_x, same_points = None, False
    if variants is not None:
        variant_y, variant_mask = jnp.asarray(variants.train_labels), jnp.asarray(variants.train_mask)
        variant_eval = jnp.asarray(variants.eval_labels)
        # every variant trains on the whole pool and its sets agree where variant 0's do: a run is then trained
        # and measured as a problem of its own (means over the pool, the held-out points of `point_subsets`)
        same_points = bool(variants.train_mask.all() and (np.all(
            variants.eval_labels == variants.eval_labels[:, :1], 1) == agree).all())
        if variants.inputs is not None:
            if model.init_width is None:
                raise UserError(f"The {cfg.model.kind} model cannot be drawn for inputs of several widths; use a "
                                f"model of real-valued inputs such as relu_mlp.")
            if cfg.optimizer.kind in ("adam", "adamw") and cfg.optimizer.eps == 0:
                raise UserError("Adam with epsilon 0 divides 0 by 0 on the zero-padded inputs' weights; give it a "
                                "positive epsilon.")
            variant_x, widths = jnp.asarray(variants.inputs), jnp.asarray(variants.input_width, jnp.int32)
    agree = jnp.asarray(agree)
    batch, per_epoch, per_unit = sched.batch_size, sched.steps_per_epoch(n_train), sched.steps_per_unit(n_train)
    optimizer = lambda hparams, params: make_optimizer(cfg.optimizer, hparams, params, sched.warmup_steps)
    if cfg.loss == "stablemax64" and not jax.config.jax_enable_x64:
        raise UserError("The float64 StableMax loss needs JAX's 64-bit mode: set JAX_ENABLE_X64=1 (or use stablemax).")
    per_point = LOSSES[cfg.loss]  # the training loss; the metrics report the softmax cross-entropy

    def apply(params, inputs):
        with jax.default_matmul_precision(cfg.matmul_precision):
            return model.apply(params, inputs)

    def run_problem(hparams) -> RunProblem:
        """What the run trains and is evaluated on: the problem's own (then `hparams` is not read), or with
        `Data.train_entry` a mask by its fraction, with `Data.variants` its variant's labels, mask, sets and inputs."""
        if variants is None:
            return RunProblem(train_y, None if entry is None else entry <= hparams["fraction"], eval_y, train_in,
                              full_in)
        v = hparams["variant"].astype(jnp.int32)
        x = (train_in, full_in) if variant_x is None else ((variant_x[v][train_idx],), (variant_x[v],))
        return RunProblem(variant_y[v], None if same_points else variant_mask[v], variant_eval[v], *x)

    def loss_fn(params, active=None, labels=None, inputs=None):
        labels = train_y if labels is None else labels
        logits = apply(params, train_in if inputs is None else inputs)
        true = jnp.take_along_axis(logits, labels[:, None], -1)[:, 0]
        if active is None:
            return jnp.mean(per_point(logits, labels)), jnp.all(true >= logits.max(-1))
        weight = active.astype(logits.dtype)
        mean = jnp.sum(weight * per_point(logits, labels)) / jnp.sum(weight)
        return mean, jnp.all((true >= logits.max(-1)) | ~active)

    def batch_loss(params, rows, weight, labels, inputs):
        """Mean loss over the training points `rows` (of the run's `labels` and `inputs`) with nonzero `weight`
        (the padding of a last, smaller batch has weight 0); the fit flag is not computed on a minibatch."""
        logits = apply(params, tuple(jnp.asarray(x)[rows] for x in inputs))
        return jnp.sum(weight * per_point(logits, labels[rows])) / jnp.sum(weight), jnp.bool_(False)

    def start(params, order_key=None) -> TrainState:
        opt_state = optimizer(cfg.optimizer.hparams(), params).init(params)
        key = jnp.zeros(2, jnp.uint32) if order_key is None else order_key
        return TrainState(params, opt_state, jnp.int32(0), jnp.int32(-1), key)

    def init(key, hparams=None) -> TrainState:
        if variant_x is None:
            return start(model.init(key), order_key(key))
        if hparams is None:
            raise ValueError("The init of a sweep over inputs of several widths needs the run's hparams.")
        return start(model.init_width(key, widths[hparams["variant"].astype(jnp.int32)]), order_key(key))

    def epoch_order(state: TrainState):
        """The permutation of the training points for the epoch of `state`'s next step, padded to whole batches."""
        order = jax.random.permutation(jax.random.fold_in(state.order_key, state.epoch // per_epoch), n_train)
        return jnp.concatenate([order, jnp.zeros(per_epoch * batch - n_train, order.dtype)])

    def step(state: TrainState, hparams, order=None) -> TrainState:
        """One optimizer update; with minibatches on the batch of `order` (default: drawn for this step's epoch)."""
        run = run_problem(hparams)
        if batch:
            order = epoch_order(state) if order is None else order
            within = state.epoch % per_epoch
            rows = jax.lax.dynamic_slice(order, (within * batch,), (batch,))
            weight = (within * batch + jnp.arange(batch) < n_train).astype(jnp.float32)
            (_, fitted), grads = jax.value_and_grad(batch_loss, has_aux=True)(state.params, rows, weight, run.labels,
                                                                              run.train_in)
        else:
            (_, fitted), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, run.active, run.labels,
                                                                           run.train_in)
        fit_epoch = jnp.where((state.fit_epoch < 0) & fitted, state.epoch, state.fit_epoch)
        updates, opt_state = optimizer(hparams, state.params).update(grads, state.opt_state, state.params)
        return TrainState(optax.apply_updates(state.params, updates), opt_state, state.epoch + 1, fit_epoch,
                          state.order_key)

    def unit(state: TrainState, hparams) -> TrainState:
        """One schedule unit: an optimizer step (which draws its epoch's permutation itself), or every step of an
        epoch, which share one permutation drawn once."""
        if per_unit == 1:
            return step(state, hparams)
        order = epoch_order(state)
        return jax.lax.scan(lambda s, _: (step(s, hparams, order), None), state, length=per_unit)[0]

    def metrics(params, hparams=None) -> Metrics:
        """Metrics of one model; a point counts as correct when its true logit is the largest. With
        `Data.train_entry` or `Data.variants`, of the run's own training set and evaluation sets (by `hparams`)."""
        if (entry is not None or variants is not None) and hparams is None:
            raise ValueError("The metrics of a sweep over training fractions or problems need the run's hparams.")
        labels, active, sets, _, inputs = run_problem(hparams)
        logits = apply(params, inputs)  # (n_points, classes), shared by every evaluation set's labels
        lse, top = jax.nn.logsumexp(logits, -1), logits.max(-1)
        group_true = jnp.take_along_axis(logits[None], sets[..., None], -1)[..., 0]  # (sets, n_points)
        train_logits = logits[train_idx]
        true = jnp.take_along_axis(train_logits, labels[:, None], -1)[:, 0]
        others = jnp.where(jax.nn.one_hot(labels, data.n_classes, dtype=bool), -jnp.inf, train_logits).max(-1)
        correct = group_true >= top  # (sets, n_points)
        if active is not None:
            return masked_metrics(params, active, sets, lse, top, group_true, true, others, correct)
        subset_mean = lambda x, idx: jnp.mean(x[..., idx], -1) if len(idx) else jnp.full(x.shape[:-1], jnp.nan)
        return Metrics(
            train_loss=jnp.mean(lse[train_idx] - true),
            train_acc=jnp.mean(true >= top[train_idx]),
            group_loss=jnp.mean(lse - group_true, -1),
            group_acc=jnp.mean(correct, -1),
            weight_norm=weight_norm(params),
            margin=jnp.min(true - others),
            heldout_acc=subset_mean(correct[0], heldout_idx),
            disagree_acc=subset_mean(correct, disagree_idx),
            mean_margin=jnp.mean(true - others),
        )

    def masked_metrics(params, active, sets, lse, top, group_true, true, others, correct) -> Metrics:
        """`metrics` of a run that trains on the `active` pool points and is evaluated on `sets`."""
        agreed = agree if variants is None else jnp.all(sets == sets[:1], 0)
        held = agreed & ~jnp.zeros(data.n_points, bool).at[train_idx].set(active)  # agreed on, not trained on
        mean = lambda x, mask: jnp.sum(jnp.where(mask, x, 0), -1) / jnp.sum(mask)  # NaN on an empty set
        return Metrics(
            train_loss=mean(lse[train_idx] - true, active),
            train_acc=mean(true >= top[train_idx], active),
            group_loss=jnp.mean(lse - group_true, -1),
            group_acc=jnp.mean(correct, -1),
            weight_norm=weight_norm(params),
            margin=jnp.min(jnp.where(active, true - others, jnp.inf)),
            heldout_acc=mean(correct[0], held),
            disagree_acc=mean(correct, ~agreed),
            mean_margin=mean(true - others, active),
        )

    def advance(state: TrainState, hparams, n_logs: int):
        """Train `n_logs * log_every` schedule units from `state`; metrics after every `log_every`."""

        def log_block(state, _):
            state, _ = jax.lax.scan(lambda s, _: (unit(s, hparams), None), state, length=sched.log_every)
            return state, metrics(state.params, hparams)

        return jax.lax.scan(log_block, state, length=n_logs)

    def train(key, hparams):
        """The whole run: init, then every unit. The trace includes time 0; with `keep_every`, the states at
        0, keep_every, 2 keep_every, ... are returned too (else None)."""
        state = init(key, hparams)
        first_state, first = state, metrics(state.params, hparams)
        if not sched.keep_every:
            state, trace = advance(state, hparams, sched.n_logs)
            kept = None
        else:
            def keep_block(state, _):
                state, trace = advance(state, hparams, sched.keep_every // sched.log_every)
                return state, (trace, state)

            state, (trace, kept) = jax.lax.scan(keep_block, state, length=sched.length // sched.keep_every)
            trace = jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), trace)
            kept = _prepend(first_state, kept)
        return state, _prepend(first, trace), kept

    return Trainer(init, start, step, advance, train, metrics, apply, loss_fn)


def point_subsets(data: Data) -> tuple[np.ndarray, np.ndarray]:
    """(held-out, disagreement) point indices: the points on which every evaluation set agrees and that are not
    trained on, and the points on which the sets disagree."""
    agree = np.all(data.eval_labels == data.eval_labels[:1], 0)
    heldout = agree.copy()
    heldout[data.train_idx] = False
    return np.flatnonzero(heldout), np.flatnonzero(~agree)


def _prepend(first, rest):
    """Stack a PyTree of single values in front of a PyTree of stacked ones."""
    return jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first, rest)


@jax.jit
def _fold_in_each(base, indices):
    return jax.vmap(lambda i: jax.random.fold_in(base, i))(indices)


def order_key(key) -> jax.Array:
    """A run's data-order key, from the key that drew its init (see the module docstring)."""
    return jax.random.fold_in(key, ORDER_TAG)


def seed_keys(seed: int, indices) -> jax.Array:
    """Per-seed init keys `fold_in(PRNGKey(seed), i)`: seed i's key ignores how many run beside it. Compiled
    (the sweep makes its keys call by call: 0.01 ms for 8 keys instead of 1.5 ms op by op; the same bits)."""
    return _fold_in_each(jax.random.PRNGKey(seed), jnp.asarray(indices, jnp.uint32))
