"""One pure training function per (seed key, task, config); everything else transforms it.

`make_trainer(task, cfg)` returns a `Trainer` of pure functions:
`init(key) -> state`, `advance(state, hparams, n_logs) -> (state, trace)` and
`train(key, hparams) -> (state, trace, kept checkpoints)`, the whole run. Training is full batch,
`lax.scan` over epochs with metrics every `log_every` epochs (a nested scan).
Hyperparameters that a sweep may vary (learning rate, weight decay) are arrays
in `hparams`, not constants, so changing them does not recompile.
"""

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from grokjax.errors import UserError
from grokjax.model import MLP2, weight_norm, weights_only
from grokjax.tasks import Task

OPTIMIZERS = ("adam", "adamw", "sgd")
PRECISIONS = ("default", "high", "highest")


@dataclass(frozen=True)
class TrainConfig:
    """Model and optimiser; defaults are the published setup (Adam with L2 decay on weights)."""

    embed_dim: int = 32
    hidden_dim: int = 32
    unembed_bias: bool = True
    optimizer: str = "adam"
    lr: float = 1e-2
    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1e-8
    weight_decay: float = 2e-5
    momentum: float = 0.0
    epochs: int = 3000
    log_every: int = 10
    keep_every: int = 0  # keep the parameters every this many epochs (0: only the final ones)
    matmul_precision: str = "highest"

    def __post_init__(self):
        for name in ("embed_dim", "hidden_dim", "epochs", "log_every"):
            if getattr(self, name) < 1:
                raise UserError(f"{name.replace('_', ' ').capitalize()} must be a positive integer, got {getattr(self, name)}.")
        if self.epochs % self.log_every:
            raise UserError(f"The number of epochs ({self.epochs}) must be a multiple of the log interval ({self.log_every}).")
        if self.keep_every < 0 or self.keep_every % self.log_every or (self.keep_every and self.epochs % self.keep_every):
            raise UserError(f"The checkpoint interval ({self.keep_every}) must be a multiple of the log interval "
                            f"({self.log_every}) that divides the number of epochs ({self.epochs}).")
        if self.optimizer not in OPTIMIZERS:
            raise UserError(f"Unknown optimizer '{self.optimizer}'; expected one of {', '.join(OPTIMIZERS)}.")
        if self.matmul_precision not in PRECISIONS:
            raise UserError(f"Unknown matmul precision '{self.matmul_precision}'; expected one of {', '.join(PRECISIONS)}.")
        finite = all(math.isfinite(getattr(self, k)) for k in ("lr", "beta1", "beta2", "eps", "weight_decay", "momentum"))
        if not finite:
            raise UserError("Optimizer hyperparameters must be finite numbers.")
        if not self.lr > 0:
            raise UserError(f"The learning rate must be positive, got {self.lr}.")
        if self.weight_decay < 0:
            raise UserError(f"The weight decay must be non-negative, got {self.weight_decay}.")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1 and 0 <= self.momentum < 1):
            raise UserError("Adam betas and SGD momentum must lie in [0, 1).")
        if self.eps < 0:
            raise UserError(f"Adam epsilon must be non-negative, got {self.eps}.")

    @property
    def n_logs(self) -> int:
        return self.epochs // self.log_every

    def hparams(self) -> dict:
        """The swept hyperparameters as float32 arrays."""
        return {"lr": jnp.float32(self.lr), "weight_decay": jnp.float32(self.weight_decay)}


def make_optimizer(cfg: TrainConfig, hparams: dict, params) -> optax.GradientTransformation:
    """The optimiser of `cfg` with the (possibly traced) learning rate and weight decay of `hparams`.

    `adam` and `sgd` add L2 decay to the gradients of the weights only (PyTorch's
    `weight_decay=` semantics); `adamw` decays the weights directly.
    """
    lr, wd, mask = hparams["lr"], hparams["weight_decay"], weights_only(params)
    if cfg.optimizer == "adamw":
        return optax.adamw(lr, cfg.beta1, cfg.beta2, cfg.eps, weight_decay=wd, mask=mask)
    if cfg.optimizer == "adam":
        core = optax.scale_by_adam(cfg.beta1, cfg.beta2, cfg.eps)
    else:
        core = optax.trace(decay=cfg.momentum) if cfg.momentum else optax.identity()
    return optax.chain(optax.add_decayed_weights(wd, mask), core, optax.scale(-lr))


class TrainState(NamedTuple):
    params: dict
    opt_state: optax.OptState
    epoch: jax.Array  # updates done so far
    fit_epoch: jax.Array  # first epoch with train accuracy 1, or -1


class Metrics(NamedTuple):
    """Metrics at one logged epoch; `group_*` have a trailing group axis."""

    train_loss: jax.Array
    train_acc: jax.Array
    group_loss: jax.Array
    group_acc: jax.Array
    weight_norm: jax.Array
    margin: jax.Array


class Trainer(NamedTuple):
    """Pure functions of one seed; see `make_trainer`."""

    init: Callable  # key -> TrainState at epoch 0
    start: Callable  # params -> TrainState with fresh optimiser state
    step: Callable  # (state, hparams) -> state after one full-batch update
    advance: Callable  # (state, hparams, n_logs) -> (state, Metrics trace)
    train: Callable  # (key, hparams) -> (final state, trace including epoch 0, kept params or None)
    metrics: Callable  # params -> Metrics
    apply: Callable  # (params, (left, right)) -> logits
    loss: Callable  # params -> (mean train cross-entropy, every train point correct)
    model: MLP2


def _split_pairs(pairs: np.ndarray, n: int):
    return pairs // n, pairs % n


def make_trainer(task: Task, cfg: TrainConfig) -> Trainer:
    """Pure functions that train one seed of `cfg` on `task`; vmap them over seeds."""
    n = task.n
    model = MLP2(n, cfg.embed_dim, cfg.hidden_dim, cfg.unembed_bias)
    train_in = _split_pairs(task.train_pairs, n)
    full_in = _split_pairs(np.arange(n * n), n)
    train_y, train_idx = jnp.asarray(task.train_labels), jnp.asarray(task.train_pairs)
    eval_y = jnp.asarray(task.eval_labels)

    def apply(params, inputs):
        with jax.default_matmul_precision(cfg.matmul_precision):
            return model.apply({"params": params}, *inputs)

    def loss_fn(params):
        logits = apply(params, train_in)
        true = jnp.take_along_axis(logits, train_y[:, None], -1)[:, 0]
        loss = jnp.mean(jax.nn.logsumexp(logits, -1) - true)
        return loss, jnp.all(true >= logits.max(-1))

    def start(params) -> TrainState:
        opt_state = make_optimizer(cfg, cfg.hparams(), params).init(params)
        return TrainState(params, opt_state, jnp.int32(0), jnp.int32(-1))

    def init(key) -> TrainState:
        return start(model.init(key, *(x[:1] for x in train_in))["params"])

    def step(state: TrainState, hparams) -> TrainState:
        (_, fitted), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        fit_epoch = jnp.where((state.fit_epoch < 0) & fitted, state.epoch, state.fit_epoch)
        updates, opt_state = make_optimizer(cfg, hparams, state.params).update(grads, state.opt_state, state.params)
        return TrainState(optax.apply_updates(state.params, updates), opt_state, state.epoch + 1, fit_epoch)

    def metrics(params) -> Metrics:
        """Metrics of one model; a point counts as correct when its true logit is the largest."""
        logits = apply(params, full_in)  # (N*N, N), shared by every group's labels
        lse, top = jax.nn.logsumexp(logits, -1), logits.max(-1)
        group_true = jnp.take_along_axis(logits[None], eval_y[..., None], -1)[..., 0]  # (groups, N*N)
        train_logits = logits[train_idx]
        true = jnp.take_along_axis(train_logits, train_y[:, None], -1)[:, 0]
        others = jnp.where(jax.nn.one_hot(train_y, n, dtype=bool), -jnp.inf, train_logits).max(-1)
        return Metrics(
            train_loss=jnp.mean(lse[train_idx] - true),
            train_acc=jnp.mean(true >= top[train_idx]),
            group_loss=jnp.mean(lse - group_true, -1),
            group_acc=jnp.mean(group_true >= top, -1),
            weight_norm=weight_norm(params),
            margin=jnp.min(true - others),
        )

    def advance(state: TrainState, hparams, n_logs: int):
        """Train `n_logs * log_every` epochs from `state`; metrics after every `log_every`."""

        def log_block(state, _):
            state, _ = jax.lax.scan(lambda s, _: (step(s, hparams), None), state, length=cfg.log_every)
            return state, metrics(state.params)

        return jax.lax.scan(log_block, state, length=n_logs)

    def train(key, hparams):
        """The whole run: init, then all epochs. The trace includes epoch 0; with `cfg.keep_every`, the
        parameters at epochs 0, keep_every, 2 keep_every, ... are returned too (else None)."""
        state = init(key)
        start_params, first = state.params, metrics(state.params)
        if not cfg.keep_every:
            state, trace = advance(state, hparams, cfg.n_logs)
            kept = None
        else:
            def keep_block(state, _):
                state, trace = advance(state, hparams, cfg.keep_every // cfg.log_every)
                return state, (trace, state.params)

            state, (trace, kept) = jax.lax.scan(keep_block, state, length=cfg.epochs // cfg.keep_every)
            trace = jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), trace)
            kept = _prepend(start_params, kept)
        return state, _prepend(first, trace), kept

    return Trainer(init, start, step, advance, train, metrics, apply, loss_fn, model)


def _prepend(first, rest):
    """Stack a PyTree of single values in front of a PyTree of stacked ones."""
    return jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first, rest)


def seed_keys(seed: int, indices) -> jax.Array:
    """Per-seed init keys `fold_in(PRNGKey(seed), i)`: seed i's key ignores how many run beside it."""
    base = jax.random.PRNGKey(seed)
    return jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.asarray(indices, jnp.uint32))
