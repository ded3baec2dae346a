"""Local learning coefficient (LLC) by SGLD, for a stack of models at once.

Every model (leading axis of a parameter PyTree) runs `chains` SGLD chains
started at its trained parameters w*, vmapped over models x chains, with the
update and estimator of the project's design notes:

    w <- w - (eps/2) nbeta grad L(w) + (eps/2) gamma (w* - w) + sqrt(eps) xi,   xi ~ N(0, I)
    llc = nbeta (mean of L(w_t) over the steps after burn-in - L(w*))

L(w_t) is the loss at the point where step t takes its gradient (t = 0 is w*);
with minibatches it is that step's minibatch loss and L(w*) is still the
full-data loss. The estimator is generic: it takes `loss_at(w_star)`, which
returns the model's loss `loss(w, batch)` (`batch` is None for the full data or
an index array of data points), so closed-form toy losses and the MLP share one
code path; `model_loss` builds it for a trained sweep, with labels (the LLC) or
with the model's own outputs at w* (the behavioral LLC).

Chain c of the model with key k uses `fold_in(fold_in(k, CHAIN_TAG), c)`; model
keys come from the caller (`seed_keys(seed, indices)`, the function that also
draws the sweep's initializations, hence the tag: even with the sweep's seed the
SGLD noise is not derived from the key that drew w*'s init), so a model's chains
do not depend on how many models run beside it. Step t of a chain with key k
draws its noise with the key `fold_in(k, t)` and its minibatch with
`fold_in(fold_in(k, t), BATCH_TAG)`. The normals come from JAX's threefry in
its non-partitionable form (the numbers differ from the partitionable default,
not their law): on CPU it draws a normal in 7.4 ns instead of 11.7, and the
noise is the largest cost of a step after the gradient.

Models run through the sweep's runner (`grokjax.run.runner`) at its width
policy: every compiled call holds exactly `models_per_call` models (the last
call padded), because XLA picks kernels and summation orders by shape: with a
fixed width a model's numbers are bit-for-bit the same whatever else runs, in
this process or in pinned CPU worker processes. Chains whose loss becomes NaN or Inf are counted
per model and left out of the estimate, its spread and split-R-hat.
"""

import dataclasses
import math
from dataclasses import dataclass
from functools import partial
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from grokjax.errors import UserError
from grokjax.run import runner
from grokjax.train import make_trainer

CHAIN_TAG = 0x11C
"""Folded into every model key before the chain index, so chain keys differ from the sweep's init keys."""
BATCH_TAG = 0xBA7
"""Folded into a step's noise key for its minibatch key."""
MIN_DRAWS_AFTER_BURN_IN = 4
"""Thinned draws after burn-in that split-R-hat needs (two halves of at least two)."""


@dataclass(frozen=True)
class LLCConfig:
    """SGLD settings; defaults are the published ones (eps 8e-4, nbeta 1000, gamma 1, 3000 full-batch steps,
    60% burn-in).

    `eps`, `nbeta` and `gamma` reach the compiled program as arrays (see `hparams`), so changing them does not
    recompile. `batch_size` 0 is full batch. The loss trace keeps every `thin`-th step, and at least
    `MIN_DRAWS_AFTER_BURN_IN` of the kept steps must follow burn-in. `models_per_call` 0 means: the runner's width
    policy (`with_models_per_call`).
    """

    eps: float = 8e-4
    nbeta: float = 1000.0
    gamma: float = 1.0
    steps: int = 3000
    chains: int = 4
    burn_in: float = 0.6
    batch_size: int = 0
    thin: int = 10
    models_per_call: int = 0

    def __post_init__(self):
        for name in ("steps", "chains", "thin"):
            if getattr(self, name) < 1:
                raise UserError(f"The number of {name} must be a positive integer, got {getattr(self, name)}.")
        if self.steps % self.thin:
            raise UserError(f"The number of steps ({self.steps}) must be a multiple of the thinning ({self.thin}).")
        if self.batch_size < 0 or self.models_per_call < 0:
            raise UserError("The batch size and models per call must be non-negative integers (0: full batch, auto).")
        if not all(math.isfinite(getattr(self, k)) and getattr(self, k) > 0 for k in ("eps", "nbeta")):
            raise UserError(f"The SGLD step size and nbeta must be positive numbers, got {self.eps} and {self.nbeta}.")
        if not (math.isfinite(self.gamma) and self.gamma >= 0):
            raise UserError(f"The localization gamma must be a non-negative number, got {self.gamma}.")
        if not 0 <= self.burn_in < 1 or self.burn_steps >= self.steps:
            raise UserError(f"The burn-in fraction must be in [0, 1) and leave at least one step, got {self.burn_in}.")
        draws = int(np.sum(self.trace_steps >= self.burn_steps))
        if draws < MIN_DRAWS_AFTER_BURN_IN:
            raise UserError(f"Only {draws} thinned steps follow burn-in (steps {self.steps}, thin {self.thin}, burn-in "
                            f"{self.burn_in:g}); split-R-hat needs at least {MIN_DRAWS_AFTER_BURN_IN}: "
                            f"use more steps or a smaller thinning.")

    @property
    def burn_steps(self) -> int:
        """Steps left out of the estimate: the first `burn_in` fraction."""
        return int(round(self.burn_in * self.steps))

    @property
    def trace_steps(self) -> np.ndarray:
        """The steps whose loss the thinned trace keeps."""
        return np.arange(0, self.steps, self.thin)

    def hparams(self) -> dict:
        """The hyperparameters that may vary without recompiling, as float32 arrays."""
        return {k: jnp.float32(getattr(self, k)) for k in ("eps", "nbeta", "gamma")}


class LLCResult(NamedTuple):
    """Estimates and diagnostics, model axis first; diverged chains are NaN in `llc_chains` and excluded elsewhere."""

    llc: jax.Array  # (models,) mean over the chains that stayed finite (NaN if none did)
    llc_std: jax.Array  # (models,) standard deviation over those chains (ddof 1)
    llc_chains: jax.Array  # (models, chains) estimate of each chain
    rhat: jax.Array  # (models,) split-R-hat of the thinned loss after burn-in, over finite chains
    n_diverged: jax.Array  # (models,) chains whose loss became NaN or Inf
    baseline: jax.Array  # (models,) full-data L(w*)
    loss_trace: jax.Array  # (models, chains, len(trace_steps)) L(w_t) every `thin` steps


class LLCLoss(NamedTuple):
    """A per-model loss: `loss_at(w_star)` returns `loss(w, batch) -> scalar` for the model trained to `w_star`.

    `batch` is None (all data) or an index array of `batch_size` points drawn from `n_data`; closed-form losses
    ignore it. What `loss_at` computes from w* alone (the behavioral targets) is computed once per chain, not per step.
    """

    loss_at: Callable
    n_data: int = 0


def _chain(loss: LLCLoss, w_star, key, hp, cfg: LLCConfig):
    """One SGLD chain from w*: (sum of L(w_t) - L(w*) after burn-in, every L(w_t) finite, thinned trace, L(w*))."""
    model_loss = loss.loss_at(w_star)
    value_and_grad = jax.value_and_grad(model_loss)
    baseline = model_loss(w_star, None)
    flat, unravel = ravel_pytree(w_star)
    eps, nbeta, gamma = hp["eps"], hp["nbeta"], hp["gamma"]

    def step(carry, t):
        w, post_sum, finite = carry
        k_noise = jax.random.fold_in(key, t)
        batch = None
        if cfg.batch_size:
            batch = jax.random.choice(jax.random.fold_in(k_noise, BATCH_TAG), loss.n_data, (cfg.batch_size,),
                                      replace=False)
        value, grad = value_and_grad(w, batch)
        with jax.threefry_partitionable(False):  # 1.6x faster on CPU (module docstring)
            noise = unravel(jax.random.normal(k_noise, flat.shape, flat.dtype))  # one draw for every leaf compiles faster
        w = jax.tree.map(lambda w, g, w0, xi: w - eps / 2 * nbeta * g + eps / 2 * gamma * (w0 - w) + jnp.sqrt(eps) * xi,
                         w, grad, w_star, noise)
        post_sum = post_sum + jnp.where(t >= cfg.burn_steps, value - baseline, 0.0)
        return (w, post_sum, finite & jnp.isfinite(value)), value

    def block(carry, t0):
        carry, values = jax.lax.scan(step, carry, t0 + jnp.arange(cfg.thin))
        return carry, values[0]

    starts = jnp.asarray(cfg.trace_steps, jnp.int32)
    (_, post_sum, finite), trace = jax.lax.scan(block, (w_star, jnp.float32(0), jnp.bool_(True)), starts)
    return post_sum, finite, trace, baseline


def split_rhat(draws, valid):
    """Split-R-hat of `draws` (chains, draws) over the chains where `valid`; NaN with fewer than 2 draws per half."""
    half = draws.shape[1] // 2
    if half < 2:
        return jnp.float32(jnp.nan)
    halves = jnp.concatenate([draws[:, :half], draws[:, -half:]])
    ok = jnp.concatenate([valid, valid])
    k = jnp.sum(ok)
    means, variances = jnp.mean(halves, 1), jnp.var(halves, 1, ddof=1)
    within = jnp.sum(jnp.where(ok, variances, 0)) / k
    grand = jnp.sum(jnp.where(ok, means, 0)) / k
    between = jnp.sum(jnp.where(ok, (means - grand) ** 2, 0)) / (k - 1)  # B / n
    return jnp.sqrt(((half - 1) / half * within + between) / within)


def _summary(cfg: LLCConfig, post_sum, finite, trace, baseline, nbeta) -> LLCResult:
    """One model's estimate and diagnostics from its chains (leading axis), the diverged ones left out."""
    per_chain = jnp.where(finite, nbeta * post_sum / (cfg.steps - cfg.burn_steps), jnp.nan)
    n_ok = jnp.sum(finite)
    mean = jnp.sum(jnp.where(finite, per_chain, 0)) / n_ok
    spread = jnp.sum(jnp.where(finite, (per_chain - mean) ** 2, 0))
    std = jnp.where(n_ok > 1, jnp.sqrt(spread / jnp.maximum(n_ok - 1, 1)), jnp.nan)
    after_burn_in = trace[:, np.flatnonzero(cfg.trace_steps >= cfg.burn_steps)]
    return LLCResult(mean, std, per_chain, split_rhat(after_burn_in, finite), cfg.chains - n_ok, baseline, trace)


def _models(loss: LLCLoss, cfg: LLCConfig, keys, w_star, hp) -> LLCResult:
    """Every chain of a batch of models, vmapped over one flat models x chains axis (nested vmaps compile about
    twice as slowly), then each model's estimate; chain c of the model with key k uses
    `fold_in(fold_in(k, CHAIN_TAG), c)`."""
    m, c = len(keys), cfg.chains
    chain_keys = jax.vmap(lambda k: jax.vmap(lambda i: jax.random.fold_in(jax.random.fold_in(k, CHAIN_TAG), i))(
        jnp.arange(c, dtype=jnp.uint32)))(keys)
    per_chain = lambda x: jnp.repeat(x, c, axis=0)
    chains = jax.vmap(lambda w0, k, h: _chain(loss, w0, k, h, cfg))(
        jax.tree.map(per_chain, w_star), chain_keys.reshape(m * c, *keys.shape[1:]), jax.tree.map(per_chain, hp))
    post_sum, finite, trace, baseline = jax.tree.map(lambda x: x.reshape(m, c, *x.shape[1:]), chains)
    return jax.vmap(partial(_summary, cfg))(post_sum, finite, trace, baseline[:, 0], hp["nbeta"])


def llc_program(loss, cfg: LLCConfig) -> Callable:
    """The runner's program: `(keys, params, hparams) -> LLCResult` for a batch of models (leading axis of all
    three). `loss` is an `LLCLoss`, or `(make_loss, args)` with a module-level `make_loss(*args) -> LLCLoss`,
    which worker processes can rebuild (a loss closure cannot be sent to another process)."""
    if not isinstance(loss, LLCLoss):
        loss = loss[0](*loss[1])
    if cfg.batch_size > loss.n_data and cfg.batch_size:
        raise UserError(f"The batch size {cfg.batch_size} exceeds the {loss.n_data} data points.")
    return partial(_models, loss, cfg)


def llc_inputs(params, keys, cfg: LLCConfig, hparams: dict | None = None) -> tuple:
    """(keys, params, per-model hparams) as numpy arrays, model axis first: the items the runner deals out."""
    n = len(keys)
    hp = {k: np.broadcast_to(np.asarray(v, np.float32), (n,)) for k, v in (hparams or cfg.hparams()).items()}
    return np.asarray(keys), jax.tree.map(np.asarray, params), hp


def with_models_per_call(loss, cfg: LLCConfig, params, keys) -> LLCConfig:
    """`cfg` with its call width chosen by the runner's policy if it is 0: on CPU, as many models as make
    `runner.CPU_INSTANCES_PER_CALL` chains (the sweep's instances per call); on accelerators, measured."""
    if cfg.models_per_call:
        return cfg
    first = jax.tree.map(lambda x: np.asarray(x)[:1], (keys, params))
    width = runner.call_width((llc_program, (loss, cfg)), llc_inputs(first[1], first[0], cfg), cfg.chains)
    return dataclasses.replace(cfg, models_per_call=width)


def estimate_llc(loss, params, keys, cfg: LLCConfig = LLCConfig(), hparams: dict | None = None,
                 on_call: Callable | None = None, workers: int = 1) -> LLCResult:
    """Estimate the LLC of every model in `params` (leading axis) with `cfg.chains` SGLD chains each.

    `loss` is an `LLCLoss` or `(make_loss, args)` (see `llc_program`; needed for `workers` other than 1).
    `keys` holds one PRNG key per model (e.g. `seed_keys(seed, indices)`). `hparams` (eps, nbeta, gamma; default
    `cfg.hparams()`) may give one value per model. The runner runs `models_per_call` models per call (0: its
    width policy), the last call padded with copies of the last model, on every local device, or in `workers`
    pinned CPU processes (0: one per core); the numbers are the same bit for bit. `on_call(n_models_done)` is
    called after each call. Returns numpy arrays.
    """
    cfg = with_models_per_call(loss, cfg, params, keys)
    if isinstance(loss, LLCLoss) and runner.worker_count(workers, -(-len(keys) // cfg.models_per_call)) > 1:
        raise UserError("LLC worker processes need the loss as (make_loss, args), which they can rebuild.")
    out, _ = runner.map_program((llc_program, (loss, cfg)), llc_inputs(params, keys, cfg, hparams),
                                cfg.models_per_call, workers, on_call, what="model", option="--models-per-call")
    return LLCResult(*out)


def sweep_loss(sweep_cfg, behavioral: bool = False) -> LLCLoss:
    """The `model_loss` of the models of a sweep with config `sweep_cfg` (a `grokjax.run.specs.SweepConfig`),
    built from the config alone, as an LLC worker process does."""
    data = sweep_cfg.problem.build()
    return model_loss(make_trainer(data, sweep_cfg), data, behavioral)


def model_loss(trainer, data, behavioral: bool = False) -> LLCLoss:
    """The loss of a trained model (a `grokjax.train.Trainer`) on the training set of `data`.

    Standard: mean cross-entropy against the labels. Behavioral: mean over the training inputs of
    KL(softmax f_{w*}(x) || softmax f_w(x)), the labels replaced by the model's own outputs at w* (so L(w*) = 0).
    """
    inputs = tuple(jnp.asarray(x) for x in data.columns(data.train_idx))
    labels = jnp.asarray(data.train_labels)

    def take(x, batch):
        return x if batch is None else x[batch]

    def log_probs(w, batch):
        return jax.nn.log_softmax(trainer.apply(w, tuple(take(x, batch) for x in inputs)))

    def loss_at(w_star):
        if not behavioral:
            def cross_entropy(w, batch):
                logits = trainer.apply(w, tuple(take(x, batch) for x in inputs))
                true = jnp.take_along_axis(logits, take(labels, batch)[:, None], 1)[:, 0]
                return jnp.mean(jax.nn.logsumexp(logits, -1) - true)

            return cross_entropy
        target = log_probs(w_star, None)

        def kl(w, batch):
            p = take(target, batch)
            return jnp.mean(jnp.sum(jnp.exp(p) * (p - log_probs(w, batch)), -1))

        return kl

    return LLCLoss(loss_at, data.n_train)


def checkpoint_keys(seed: int, indices, epochs) -> np.ndarray:
    """(models, checkpoints) keys `fold_in(fold_in(PRNGKey(seed), i), epoch)`: a checkpoint's chains do not depend
    on which other checkpoints were kept."""
    base = jax.random.PRNGKey(seed)
    per_model = jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.asarray(indices, jnp.uint32))
    at_epochs = lambda k: jax.vmap(lambda e: jax.random.fold_in(k, e))(jnp.asarray(epochs, jnp.uint32))
    return np.asarray(jax.vmap(at_epochs)(per_model))


def estimate_llc_checkpoints(loss: LLCLoss, checkpoints, keys, cfg: LLCConfig = LLCConfig(),
                             hparams: dict | None = None, on_call: Callable | None = None,
                             workers: int = 1) -> LLCResult:
    """The LLC at every checkpoint: `checkpoints` leaves and `keys` are (models, checkpoints, ...), and so are the
    results (see `checkpoint_keys`); the flattened models run as `estimate_llc` runs them."""
    n_models, n_ckpt = np.shape(keys)[:2]
    flat = lambda x: np.reshape(x, (n_models * n_ckpt, *np.shape(x)[2:]))
    out = estimate_llc(loss, jax.tree.map(flat, checkpoints), flat(keys), cfg, hparams, on_call, workers)
    return jax.tree.map(lambda x: x.reshape(n_models, n_ckpt, *x.shape[1:]), out)


class Calibration(NamedTuple):
    """An eps x nbeta grid of estimates for a few models: arrays (eps, nbeta, models), and where it is stable."""

    eps: np.ndarray  # (E,)
    nbeta: np.ndarray  # (B,)
    llc: np.ndarray  # (E, B, models)
    llc_std: np.ndarray
    rhat: np.ndarray
    n_diverged: np.ndarray
    stable: np.ndarray  # (E, B) see `stable_region`
    recommended_eps: np.ndarray  # (B,) largest stable eps for each nbeta, NaN where none is
    tol: float  # the criteria `stable` used
    rhat_max: float


def stable_region(llc, n_diverged, rhat, tol: float = 0.1, rhat_max: float = 1.1) -> np.ndarray:
    """(E, B) grid points where no chain of any model diverged, every split-R-hat is at most `rhat_max`, and every
    model's estimate is within `tol` (relative) of its estimate at a neighbouring eps (same nbeta) that passes too:
    the estimate sits on a plateau in eps rather than drifting with the discretization."""
    ok = (n_diverged.max(-1) == 0) & (np.nan_to_num(rhat, nan=np.inf).max(-1) <= rhat_max)
    stable = np.zeros_like(ok)
    for e in range(len(ok)):
        for nb in (e - 1, e + 1):
            if 0 <= nb < len(ok):
                close = np.abs(llc[e] - llc[nb]) <= tol * np.abs(llc[e])
                stable[e] |= ok[e] & ok[nb] & close.all(-1)
    return stable


def validate_grid(eps_grid, nbeta_grid, cfg: LLCConfig = LLCConfig()) -> None:
    """UserError unless both grids are non-empty and every (eps, nbeta) point makes a valid `LLCConfig`."""
    if not (np.size(eps_grid) and np.size(nbeta_grid)):
        raise UserError("The eps and nbeta grids must each hold at least one value.")
    for eps in np.ravel(eps_grid):
        for nbeta in np.ravel(nbeta_grid):
            dataclasses.replace(cfg, eps=float(eps), nbeta=float(nbeta))


def calibrate(loss: LLCLoss, params, keys, eps_grid, nbeta_grid, cfg: LLCConfig = LLCConfig(),
              tol: float = 0.1, rhat_max: float = 1.1) -> Calibration:
    """Estimate the LLC of a few models (leading axis of `params`) over an eps x nbeta grid in one compiled call.

    Every grid point reuses each model's key (common random numbers), so differences along the grid come from
    eps and nbeta, not from the noise. `cfg` gives gamma, steps, chains and burn-in. Every grid point must be a
    valid `LLCConfig` (positive, finite eps and nbeta), else UserError.
    """
    validate_grid(eps_grid, nbeta_grid, cfg)
    eps_grid, nbeta_grid = np.asarray(eps_grid, np.float32), np.asarray(nbeta_grid, np.float32)
    n_eps, n_nbeta, m = len(eps_grid), len(nbeta_grid), len(keys)
    grid = n_eps * n_nbeta
    hparams = {"eps": np.repeat(np.repeat(eps_grid, n_nbeta), m), "nbeta": np.tile(np.repeat(nbeta_grid, m), n_eps),
               "gamma": np.float32(cfg.gamma)}
    tiled = jax.tree.map(lambda x: np.tile(np.asarray(x), (grid,) + (1,) * (np.ndim(x) - 1)), params)
    one_call = dataclasses.replace(cfg, models_per_call=grid * m)
    out = estimate_llc(loss, tiled, np.tile(np.asarray(keys), (grid, 1)), one_call, hparams)
    shaped = {k: getattr(out, k).reshape(n_eps, n_nbeta, m) for k in ("llc", "llc_std", "rhat", "n_diverged")}
    stable = stable_region(shaped["llc"], shaped["n_diverged"], shaped["rhat"], tol, rhat_max)
    best = [eps_grid[stable[:, b]].max() if stable[:, b].any() else np.nan for b in range(n_nbeta)]
    return Calibration(eps_grid, nbeta_grid, **shaped, stable=stable, recommended_eps=np.array(best, np.float32),
                       tol=tol, rhat_max=rhat_max)
