"""Generalization measures of Jiang et al. (2019), "Fantastic generalization measures and where to find them",
for a stack of models at once (leading axis of a parameter PyTree), as a program for the runner.

Definitions follow the reference implementation most studies use, nitarshan/robust-generalization-measures
(`data/generation/measures.py`, after Jiang et al. and Neyshabur's generalization-bounds code): the names, which
measures are logs, the margin, the sigma search and the adjustment for the dataset size are theirs.

- Layers are the weight leaves of the parameters (`weights_only`; biases `b_*` are not weights), each viewed as
  the matrix `(shape[0], -1)`; `d` is their number, `w0` the run's initial parameters.
- Margin `gamma`: the (m // 10)-th smallest (at least the first) of `true logit - largest other logit` over the m
  training points, in absolute value (the reference's `kthvalue(m // 10)`, then `abs`).
- Norms: `||W||_2` the largest singular value, `||W||_F` the Frobenius norm; products are sums of logs.
- PATH_NORM: the network with every parameter squared (biases too), evaluated on an all-ones input and summed
  over its outputs; all its pre-activations are then non-negative, so no ReLU cuts a path and it is the sum
  over input-to-output paths of the product of their squared weights (plus the paths from biases). For token
  inputs an all-ones one-hot input sums every row of the tables the tokens index (leaves named `embed_*`, and
  the linear model's `w_in_<k>`): `path_norm` puts that sum in every row and feeds token 0.
- PAC-Bayes sigma: bisection on [0, sigma_max] (depth 15) for the largest sigma whose perturbation lowers the
  training accuracy by `displacement` (0.1) within `tolerance` (0.01), the accuracy averaged over `samples` (10)
  draws of noise on every parameter; it stops at the first midpoint within tolerance and returns the last
  midpoint tried. Magnitude-aware: per parameter variance `sigma^2 w_i^2 + eps^2`, eps = 1e-3.

Two departures, both towards the paper's definitions: the reference draws noise with *standard deviation*
sigma^2 (`torch.normal(0, sigma**2)`) and, magnitude-aware, `sigma^2 |w_i|^2 + eps^2`; here the noise is
N(0, sigma^2) and N(0, sigma^2 w_i^2 + eps^2) as in Jiang et al. (so PACBAYES_FLATNESS = 1/sigma^2 is the
paper's). The FFT spectral norms (for convolutions; equal to the exact ones for dense layers) and the parameter
count (the same for every run) are left out.

As in the reference, every measure is finally adjusted for the m training points: `0.5 (value - log m)` for
the LOG_ measures, `sqrt(value / m)` for the others (monotone, so rank correlations are unchanged). The
PAC-Bayes noise of the model with key k uses `fold_in(fold_in(fold_in(k, tag), iteration), sample)`, tag
`FLATNESS_TAG` or `MAGNITUDE_TAG`: a model's numbers do not depend on which models are computed with it.
"""

import math
from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from grokjax.errors import UserError
from grokjax.models.base import weights_only
from grokjax.train import make_trainer

FLATNESS_TAG = 0xF1A
"""Folded into a model's key for the noise of the PAC-Bayes sigma search (apart from the sweep's init keys)."""
MAGNITUDE_TAG = 0x3A6
"""Folded into a model's key for the noise of the magnitude-aware sigma search."""
MEASURES = (
    "L2", "L2_DIST", "INVERSE_MARGIN",
    "LOG_PROD_OF_SPEC", "LOG_PROD_OF_SPEC_OVER_MARGIN", "LOG_SPEC_INIT_MAIN", "FRO_OVER_SPEC", "LOG_SPEC_ORIG_MAIN",
    "LOG_SUM_OF_SPEC_OVER_MARGIN", "LOG_SUM_OF_SPEC",
    "LOG_PROD_OF_FRO", "LOG_PROD_OF_FRO_OVER_MARGIN", "LOG_SUM_OF_FRO_OVER_MARGIN", "LOG_SUM_OF_FRO",
    "FRO_DIST", "DIST_SPEC_INIT", "PARAM_NORM", "PATH_NORM", "PATH_NORM_OVER_MARGIN",
    "PACBAYES_INIT", "PACBAYES_ORIG", "PACBAYES_FLATNESS",
    "PACBAYES_MAG_INIT", "PACBAYES_MAG_ORIG", "PACBAYES_MAG_FLATNESS",
)
"""Every measure, named as the reference names them."""
DIAGNOSTICS = ("margin", "sigma", "magnitude_sigma", "train_acc")
"""Saved beside the measures: gamma, the two sigmas found, and the unperturbed training accuracy."""


@dataclass(frozen=True)
class MeasuresConfig:
    """The sigma searches' settings (defaults: the reference's) and the models per compiled call (0: the runner's
    width policy)."""

    search_depth: int = 15
    samples: int = 10
    displacement: float = 0.1
    tolerance: float = 1e-2
    sigma_max: float = 2.0
    magnitude_eps: float = 1e-3
    models_per_call: int = 0

    def __post_init__(self):
        for name in ("search_depth", "samples"):
            if getattr(self, name) < 1:
                raise UserError(f"The {name.replace('_', ' ')} must be a positive integer, got {getattr(self, name)}.")
        if self.models_per_call < 0:
            raise UserError(f"The models per call must be a non-negative integer (0: auto), got {self.models_per_call}.")
        for name in ("displacement", "tolerance", "sigma_max", "magnitude_eps"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise UserError(f"The {name.replace('_', ' ')} must be a positive number, got {value}.")
        if not self.displacement < 1:
            raise UserError(f"The accuracy displacement must be below 1, got {self.displacement}.")


def weight_matrices(params) -> list:
    """The weight leaves of `params` (biases left out), each as a matrix (shape[0], -1), in leaf order (no measure
    depends on the order of the layers)."""
    marks = jax.tree.leaves(weights_only(params))
    return [x.reshape(x.shape[0], -1) for x, w in zip(jax.tree.leaves(params), marks) if w]


def spectral_norm(w) -> jax.Array:
    """The largest singular value of the matrix `w`."""
    return jnp.linalg.svd(w, compute_uv=False)[0]


def spectral_norms(matrices: list) -> jax.Array:
    """The largest singular value of each matrix, by one batched SVD of the matrices zero-padded to a common
    shape (padding adds only zero singular values; one SVD instead of one per shape halves the compile time)."""
    rows, cols = max(m.shape[0] for m in matrices), max(m.shape[1] for m in matrices)
    padded = jnp.stack([jnp.pad(m, ((0, rows - m.shape[0]), (0, cols - m.shape[1]))) for m in matrices])
    return jax.vmap(spectral_norm)(padded)


def _is_input_table(path) -> bool:
    name = str(getattr(path[-1], "key", path[-1]))
    return name.startswith("embed") or (name.startswith("w_in_") and name[5:].isdigit())


def path_norm(apply: Callable, params, example_inputs) -> jax.Array:
    """Sum of the outputs of the network with squared parameters on an all-ones input (see the module docstring).

    `example_inputs` is one point's inputs as `apply` takes them: token columns (then every table the tokens
    index holds the sum of its squared rows in each row, and token 0 is fed) or one row of real features."""
    squared = jax.tree.map(jnp.square, params)
    tokens = all(jnp.issubdtype(x.dtype, jnp.integer) for x in example_inputs)
    if tokens:
        squared = jax.tree_util.tree_map_with_path(
            lambda path, x: jnp.broadcast_to(x.sum(0), x.shape) if _is_input_table(path) else x, squared)
        inputs = tuple(jnp.zeros_like(x) for x in example_inputs)
    else:
        inputs = tuple(jnp.ones_like(x) for x in example_inputs)
    return jnp.sum(apply(squared, inputs))


def margins(logits, labels) -> jax.Array:
    """Per point: true logit minus the largest other logit."""
    true = jnp.take_along_axis(logits, labels[:, None], 1)[:, 0]
    others = jnp.where(jax.nn.one_hot(labels, logits.shape[1], dtype=bool), -jnp.inf, logits).max(-1)
    return true - others


def margin_percentile(logits, labels) -> jax.Array:
    """gamma: the absolute value of the (m // 10)-th smallest margin (the first when m < 10)."""
    k = max(len(labels) // 10, 1)
    return jnp.abs(jnp.sort(margins(logits, labels))[k - 1])


def accuracy(logits, labels) -> jax.Array:
    """Share of points whose true logit is the largest (the trainer's rule)."""
    true = jnp.take_along_axis(logits, labels[:, None], 1)[:, 0]
    return jnp.mean(true >= logits.max(-1))


def sigma_search(accuracy_of: Callable, params, key, cfg: MeasuresConfig, magnitude: bool = False) -> jax.Array:
    """The PAC-Bayes sigma of `params` by bisection (see the module docstring); `accuracy_of(params)` is the
    training accuracy. Noise N(0, sigma^2), or with `magnitude` N(0, sigma^2 w_i^2 + eps^2), on every parameter."""
    flat, unravel = ravel_pytree(params)
    target = accuracy_of(params)

    def mean_accuracy(sigma, k):
        std = jnp.sqrt(sigma**2 * flat**2 + cfg.magnitude_eps**2) if magnitude else sigma
        noisy = lambda s: accuracy_of(unravel(flat + std * jax.random.normal(jax.random.fold_in(k, s), flat.shape)))
        return jnp.mean(jax.vmap(noisy)(jnp.arange(cfg.samples, dtype=jnp.uint32)))

    def bisect(carry, it):
        lower, upper, sigma, done = carry
        trial = (lower + upper) / 2
        shift = jnp.abs(mean_accuracy(trial, jax.random.fold_in(key, it)) - target)
        close = jnp.abs(shift - cfg.displacement) < cfg.tolerance
        too_far = shift > cfg.displacement
        lower = jnp.where(done | close | too_far, lower, trial)
        upper = jnp.where(done | close | ~too_far, upper, trial)
        return (lower, upper, jnp.where(done, sigma, trial), done | close), None

    start = (jnp.float32(0), jnp.float32(cfg.sigma_max), jnp.float32(0), jnp.bool_(False))
    (_, _, sigma, _), _ = jax.lax.scan(bisect, start, jnp.arange(cfg.search_depth, dtype=jnp.uint32))
    return sigma


def generalization_measures(params, init_params, gamma, path, sigma, mag_sigma, m: int, magnitude_eps: float) -> dict:
    """Every measure of `MEASURES` of one model from its parameters, its init, its margin gamma, its path norm,
    its two sigmas (the second found with `magnitude_eps`) and the number m of training points, adjusted for m as
    the reference does."""
    layers = weight_matrices(params)
    dist = weight_matrices(jax.tree.map(jnp.subtract, params, init_params))
    d = len(layers)
    fro = jnp.stack([jnp.sum(x**2) for x in layers])
    dist_fro = jnp.stack([jnp.sum(x**2) for x in dist])
    spec, dist_spec = jnp.split(spectral_norms(layers + dist) ** 2, 2)
    w_vec = jnp.concatenate([x.ravel() for x in layers])
    dist_vec = jnp.concatenate([x.ravel() for x in dist])
    log_margin2 = 2 * jnp.log(gamma)
    log_spec, log_fro = jnp.sum(jnp.log(spec)), jnp.sum(jnp.log(fro))
    v = {"L2": jnp.sqrt(jnp.sum(w_vec**2)), "L2_DIST": jnp.sqrt(jnp.sum(dist_vec**2)), "INVERSE_MARGIN": 1 / gamma**2,
         "LOG_PROD_OF_SPEC": log_spec, "LOG_PROD_OF_SPEC_OVER_MARGIN": log_spec - log_margin2,
         "LOG_SPEC_INIT_MAIN": log_spec - log_margin2 + jnp.log(jnp.sum(dist_fro / spec)),
         "FRO_OVER_SPEC": jnp.sum(fro / spec),
         "LOG_SPEC_ORIG_MAIN": log_spec - log_margin2 + jnp.log(jnp.sum(fro / spec)),
         "LOG_SUM_OF_SPEC_OVER_MARGIN": math.log(d) + (log_spec - log_margin2) / d,
         "LOG_SUM_OF_SPEC": math.log(d) + log_spec / d,
         "LOG_PROD_OF_FRO": log_fro, "LOG_PROD_OF_FRO_OVER_MARGIN": log_fro - log_margin2,
         "LOG_SUM_OF_FRO_OVER_MARGIN": math.log(d) + (log_fro - log_margin2) / d,
         "LOG_SUM_OF_FRO": math.log(d) + log_fro / d,
         "FRO_DIST": jnp.sum(dist_fro), "DIST_SPEC_INIT": jnp.sum(dist_spec), "PARAM_NORM": jnp.sum(fro),
         "PATH_NORM": path, "PATH_NORM_OVER_MARGIN": path / gamma**2}
    pacbayes = lambda ref: jnp.sum(ref**2) / (4 * sigma**2) + jnp.log(m / sigma) + 10
    v.update(PACBAYES_INIT=pacbayes(dist_vec), PACBAYES_ORIG=pacbayes(w_vec), PACBAYES_FLATNESS=1 / sigma**2)
    eps2, omega = magnitude_eps**2, w_vec.size

    def magnitude_bound(ref):
        ratio = (eps2 + (mag_sigma**2 + 1) * jnp.sum(ref**2) / omega) / (eps2 + mag_sigma**2 * dist_vec**2)
        return jnp.sum(jnp.log(ratio)) / 4 + jnp.log(m / mag_sigma) + 10

    v.update(PACBAYES_MAG_INIT=magnitude_bound(dist_vec), PACBAYES_MAG_ORIG=magnitude_bound(w_vec),
             PACBAYES_MAG_FLATNESS=1 / mag_sigma**2)
    return {k: 0.5 * (v[k] - math.log(m)) if k.startswith("LOG_") else jnp.sqrt(v[k] / m) for k in MEASURES}


def measures_program(sweep_cfg, cfg: MeasuresConfig) -> Callable:
    """The runner's program: `(params, init_keys, keys) -> {name: (models,)}` for a batch of models of the sweep
    with config `sweep_cfg`: every measure and `DIAGNOSTICS`. `init_keys` are the keys that drew each model's
    run's init (`run_inputs`), `keys` the base keys of its PAC-Bayes noise. A model with a non-finite parameter
    (a diverged run) gets NaN everywhere."""
    data = sweep_cfg.problem.build()
    trainer = make_trainer(data, sweep_cfg)
    inputs = tuple(jnp.asarray(x) for x in data.columns(data.train_idx))
    labels = jnp.asarray(data.train_labels)
    example = tuple(x[:1] for x in inputs)
    accuracy_of = lambda p: accuracy(trainer.apply(p, inputs), labels)

    def one(params, init_key, key):
        init = trainer.init(init_key).params
        finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(params)]))
        params = jax.tree.map(lambda x, x0: jnp.where(finite, x, x0), params, init)  # no SVD of NaNs
        logits = trainer.apply(params, inputs)
        gamma = margin_percentile(logits, labels)
        sigma = sigma_search(accuracy_of, params, jax.random.fold_in(key, FLATNESS_TAG), cfg)
        mag_sigma = sigma_search(accuracy_of, params, jax.random.fold_in(key, MAGNITUDE_TAG), cfg, magnitude=True)
        out = generalization_measures(params, init, gamma, path_norm(trainer.apply, params, example), sigma,
                                      mag_sigma, data.n_train, cfg.magnitude_eps)
        out.update(margin=gamma, sigma=sigma, magnitude_sigma=mag_sigma, train_acc=accuracy(logits, labels))
        return {k: jnp.where(finite, v, jnp.nan) for k, v in out.items()}

    return jax.vmap(one)
