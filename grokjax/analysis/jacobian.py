"""The training Jacobian `J = ∂θ_T/∂θ_0` of the whole deterministic training map, its SVD and its bulk.

The map is built from a generic `Dynamics` (state from parameters, one update,
parameters of a state); `trainer_dynamics` makes it from the sweep's own
`Trainer.start` and `Trainer.step`, so J differentiates exactly the training
the sweep runs (fresh optimiser state at epoch 0, full-batch steps). For a list
of epochs T_1 < ... < T_K, one pass through training (a `lax.scan` per segment
between consecutive T) gives θ_T at every requested T, and its tangents give
the whole series of Jacobians at once.

Parameters are flattened by `jax.flatten_util.ravel_pytree`: leaves in the
pytree's order (for MLP2's dict: alphabetical, `b_unembed, embed_left,
embed_right, w_left, w_right, w_unembed`), each leaf row-major; `param_layout`
lists the names, shapes and offsets. Row i of J is final parameter i, column j
initial parameter j.

Three ways to get J, from small to large models:
- `jacobian`: dense, `jax.jacfwd` pushing every column at once (`jacobian_seeds`
  maps it over a stack of seeds, as many at once as the device's memory allows);
- `jacobian_columns`: the same matrix built batch by batch of columns from one
  `jax.linearize` of the training map (`vmap` over a batch of unit tangents),
  the batch size chosen from the device's total memory by `columns_per_batch`;
- `top_singular`: the top-k singular triplets by randomized subspace iteration
  on products with J (jvp) and J^T (its transpose), never forming J.

Batch widths (seeds or columns per program) come from the device's *total*
memory (`grokjax.run.runner.total_memory_bytes`), never from what happens to be free at the time,
so that the same machine always runs the same programs with the same numerics.
"""

from functools import partial
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from grokjax.errors import UserError
from grokjax.run import runner

SIGMA_TOL = 0.1
"""A bulk direction has |σ - 1| below this ..."""
COS_TOL = 0.9
"""... and a cosine above this between its left and right singular vectors."""
CPU_COLUMNS_PER_BATCH = 64
"""Most tangent columns pushed at once on CPU: small batches stay in cache (S4: 1.6-2x faster per column than 1024)."""


class Dynamics(NamedTuple):
    """A deterministic training run as three pure functions; the training map is `params(step^T(start(θ0)))`."""

    start: Callable  # params -> state at epoch 0
    step: Callable  # state -> state after one update
    params: Callable  # state -> params


class Linearized(NamedTuple):
    """The training map linearized at one θ0: `lin(v)` is `J_T v` for every requested T, shape (K, P)."""

    thetas: jax.Array  # (K, P) flat parameters after each requested epoch
    lin: Callable  # a jax.tree_util.Partial, so it can be passed to jitted functions


class Spectrum(NamedTuple):
    """What the SVD of J says, per Jacobian (leading axes as given)."""

    singular_values: jax.Array  # (..., r) in decreasing order
    cosines: jax.Array  # (..., r) u_i · v_i of matching left and right singular vectors
    bulk: jax.Array  # (..., r) |σ_i - 1| < sigma_tol and u_i · v_i > cos_tol
    bulk_size: jax.Array  # (...)
    sigma_max: jax.Array  # (...)
    logdet: jax.Array  # (...) Σ log σ_i: log |det J| when all P triplets are given


def trainer_dynamics(trainer, hparams) -> Dynamics:
    """The sweep's training of one seed: `Trainer.start` (fresh optimiser state) and full-batch `Trainer.step`.

    Make it once per trainer and reuse it: compiled programs are cached on its identity.
    """
    return Dynamics(trainer.start, lambda state: trainer.step(state, hparams), lambda state: state.params)


def param_layout(params) -> list[dict]:
    """Name, shape and offset of each leaf in the flattened parameter vector (the rows and columns of J)."""
    layout, offset = [], 0
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        layout.append({"name": jax.tree_util.keystr(path, simple=True, separator="/"),
                       "shape": list(np.shape(leaf)), "offset": offset})
        offset += int(np.size(leaf))
    return layout


def check_epochs(epochs) -> tuple[int, ...]:
    """The requested epochs as a tuple; they must be distinct non-negative integers in increasing order."""
    epochs = tuple(int(t) for t in epochs)
    if not epochs:
        raise UserError("Give at least one epoch at which to take the Jacobian.")
    if epochs[0] < 0 or any(b <= a for a, b in zip(epochs, epochs[1:])):
        raise UserError(f"The epochs must be non-negative and strictly increasing, got {list(epochs)}.")
    return epochs


def training_map(dyn: Dynamics, params0, epochs):
    """`(θ0, f)`: the flat initial parameters and `f(θ0) -> (K, P)`, the flat parameters after each of the K epochs.

    One pass through training: a `lax.scan` of `dyn.step` over each segment between
    consecutive requested epochs (a handful of segments, never a Python loop over epochs).
    """
    epochs = check_epochs(epochs)
    theta0, unravel = ravel_pytree(params0)
    segments = np.diff((0,) + epochs)

    def f(theta):
        state, out = dyn.start(unravel(theta)), []
        for length in segments:
            state = jax.lax.scan(lambda s, _: (dyn.step(s), None), state, length=int(length))[0]
            out.append(ravel_pytree(dyn.params(state))[0])
        return jnp.stack(out)

    return theta0, f


def jacobian(dyn: Dynamics, params0, epochs) -> jax.Array:
    """Dense `J_T = ∂θ_T/∂θ_0` for each requested T, shape (K, P, P), by `jax.jacfwd` (all P columns at once).

    Compiled once per `dyn` and epoch list (both static), like `linearize`.
    """
    return _jacobian(dyn, params0, check_epochs(epochs))


@partial(jax.jit, static_argnames=("dyn", "epochs"))
def _jacobian(dyn: Dynamics, params0, epochs: tuple[int, ...]) -> jax.Array:
    theta0, f = training_map(dyn, params0, epochs)
    return jax.jacfwd(f)(theta0)


def jacobian_seeds(dyn: Dynamics, params0, epochs, seeds_per_batch: int | None = None) -> jax.Array:
    """`jacobian` of every seed of stacked `params0` (seed axis first), shape (S, K, P, P).

    The runner vmaps `seeds_per_batch` seeds at once (`jacobian_program`), the last batch padded so that one
    program serves all; by default `seeds_that_fit`.
    """
    epochs = check_epochs(epochs)
    n_seeds = jax.tree.leaves(params0)[0].shape[0]
    width = seeds_per_batch or max(seeds_that_fit(dyn, jax.tree.map(lambda x: x[0], params0), epochs, n_seeds), 1)
    (j, _), _ = runner.map_program((jacobian_program, (dyn, epochs)), (params0,), width, workers=1)
    return j


def seeds_that_fit(dyn: Dynamics, params0, epochs, limit: int, memory_fraction: float = 0.5) -> int:
    """Seeds whose dense Jacobians fit `memory_fraction` of the device's total memory at once, at most `limit`;
    0 if not even one does. From the compiled footprint of one seed's program (`params0`: one seed's)."""
    one = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype), params0)
    per_seed = runner.footprint(_jacobian.lower(dyn, one, check_epochs(epochs)).compile())
    return int(min(memory_fraction * runner.total_memory_bytes() // max(per_seed, 1), limit))


def jacobian_program(dyn: Dynamics, epochs) -> Callable:
    """The runner's program of `jacobian_batch`: a batch of stacked initial parameters -> (J, θ_T)."""
    return lambda params0: _jacobian_batch(dyn, params0, check_epochs(epochs))


def jacobian_batch(dyn: Dynamics, params0, epochs):
    """`(J, θ)` of a stack of seeds (seed axis first), vmapped: J (S, K, P, P) and the flat θ_T (S, K, P).

    Compiled once per `dyn`, epoch list and number of seeds (cached, like `jacobian`).
    """
    return _jacobian_batch(dyn, params0, check_epochs(epochs))


@partial(jax.jit, static_argnames=("dyn", "epochs"))
def _jacobian_batch(dyn: Dynamics, params0, epochs: tuple[int, ...]):
    def one(p):
        theta0, f = training_map(dyn, p, epochs)

        def f_aux(theta):  # θ_T once, as output (differentiated) and as aux (kept)
            out = f(theta)
            return out, out

        return jax.jacfwd(f_aux, has_aux=True)(theta0)

    return jax.vmap(one)(params0)


def linearize(dyn: Dynamics, params0, epochs) -> Linearized:
    """Linearize the training map at `params0`: one forward pass, whose stored residuals grow with the last epoch.

    Compiled once per `dyn` and epoch list: further seeds reuse the program, and
    their `lin` functions share the compiled `column_batch` and `top_singular`.
    """
    return _linearize(dyn, params0, check_epochs(epochs))


@partial(jax.jit, static_argnames=("dyn", "epochs"))
def _linearize(dyn: Dynamics, params0, epochs: tuple[int, ...]) -> Linearized:
    theta0, f = training_map(dyn, params0, epochs)
    return Linearized(*jax.linearize(f, theta0))


@partial(jax.jit, static_argnames="size")
def column_batch(lz: Linearized, start, size: int) -> jax.Array:
    """Columns `start .. start+size-1` of every J_T, shape (K, P, size); columns past P come out zero."""
    n = lz.thetas.shape[1]
    tangents = jax.nn.one_hot(start + jnp.arange(size), n, dtype=lz.thetas.dtype, axis=0)
    return jax.vmap(lz.lin, in_axes=1, out_axes=-1)(tangents)


def columns_per_batch(lz: Linearized, memory_fraction: float = 0.5, probe: int = 8) -> int:
    """Columns to push at once: what fits `memory_fraction` of the device's total memory (not what is free
    now, so the choice is reproducible), from the compiled footprint of a `probe`-column batch; on CPU at
    most `CPU_COLUMNS_PER_BATCH`."""
    n = lz.thetas.shape[1]
    per_column = runner.footprint(column_batch.lower(lz, jnp.int32(0), min(probe, n)).compile()) / min(probe, n)
    cap = CPU_COLUMNS_PER_BATCH if jax.devices()[0].platform == "cpu" else n
    return runner.fits(per_column, min(n, cap), memory_fraction)


def jacobian_columns(lz: Linearized, batch: int | None = None, progress: Callable | None = None) -> np.ndarray:
    """Every J_T, shape (K, P, P), assembled on the host from batches of `batch` columns
    (default `columns_per_batch`); `progress(n)` is called with the columns done after each batch."""
    k, n = lz.thetas.shape
    out_bytes = k * n * n * lz.thetas.dtype.itemsize
    if out_bytes > runner.free_memory_bytes(jax.devices("cpu")[0]):
        raise UserError(f"The dense Jacobians need {out_bytes / 2**30:.1f} GiB, more than the free memory; "
                        "ask for the top singular values only.")
    batch = batch or columns_per_batch(lz)
    j = np.empty((k, n, n), lz.thetas.dtype)
    for start in range(0, n, batch):
        stop = min(start + batch, n)
        j[:, :, start:stop] = np.asarray(column_batch(lz, jnp.int32(start), batch))[:, :, : stop - start]
        if progress:
            progress(stop)
    return j


@partial(jax.jit, static_argnames=("k", "oversample", "n_iter"))
def top_singular(lz: Linearized, k: int, key, oversample: int = 10, n_iter: int = 8):
    """Top-k singular triplets `(U (K, P, k), σ (K, k), V (K, P, k))` of every J_T, matrix-free.

    Randomized subspace iteration (Halko, Martinsson and Tropp 2011, alg. 4.4) on
    k + `oversample` vectors with `n_iter` power steps, then Rayleigh-Ritz; it uses
    only products J_T v (the jvp `lz.lin`) and J_T^T u (its transpose). Values
    separated from the (k + oversample)-th converge fast; clustered ones slowly.

    Cost: `lz.lin` always runs the whole linearized training to the last requested
    epoch T_K, with outputs at every T. Each J_T's block of vectors is pushed
    through that whole pass (and back through its transpose) and only output T is
    kept: for a list of epochs about twice the work of running each block only up
    to its own T (each block costs T_K epochs instead of T). Fine for a few T; for
    many spread-out T, call it once per T with that T's own `linearize`.
    """
    n_epochs, n = lz.thetas.shape
    dtype = lz.thetas.dtype
    width = min(k + oversample, n)
    lin_t = jax.linear_transpose(lz.lin, jax.ShapeDtypeStruct((n,), dtype))

    def times_j(v):  # (K, P, w) -> (K, P, w): J_T v_T, one jvp pass for all T
        out = jax.vmap(lz.lin, in_axes=1, out_axes=-1)(v.transpose(1, 0, 2).reshape(n, n_epochs * width))
        return jnp.einsum("tptw->tpw", out.reshape(n_epochs, n, n_epochs, width))

    def times_jt(u):  # (K, P, w) -> (K, P, w): J_T^T u_T, cotangent u_T in output slot T only
        cot = jnp.einsum("tpw,ts->tpsw", u, jnp.eye(n_epochs, dtype=dtype)).reshape(n_epochs, n, n_epochs * width)
        out = jax.vmap(lambda c: lin_t(c)[0], in_axes=2, out_axes=1)(cot)
        return out.reshape(n, n_epochs, width).transpose(1, 0, 2)

    def power_step(_, carry):  # z: basis of the input space -> q = orth(J z), w = J^T q, next z = orth(w)
        z, _, _ = carry
        q = jnp.linalg.qr(times_j(z))[0]
        w = times_jt(q)
        return jnp.linalg.qr(w)[0], q, w

    z = jax.random.normal(key, (n_epochs, n, width), dtype)
    _, q, w = jax.lax.fori_loop(0, n_iter + 1, power_step, (z, z, z))
    u_small, s, vt = jnp.linalg.svd(jnp.swapaxes(w, 1, 2), full_matrices=False)  # Q^T J = w^T = u s vt
    return (q @ u_small)[..., :k], s[..., :k], jnp.swapaxes(vt, 1, 2)[..., :k]


@jax.jit
def singular_triplets(j):
    """SVD of each J (leading axes kept) as `(U, σ, V)`, singular vectors in the columns of U and V."""
    u, s, vt = jnp.linalg.svd(j)
    return u, s, jnp.swapaxes(vt, -1, -2)


@jax.jit
def analyse(u, s, v, sigma_tol: float = SIGMA_TOL, cos_tol: float = COS_TOL) -> Spectrum:
    """Spectrum, bulk, largest singular value and log-determinant from singular triplets `(U, σ, V)`.

    A direction is in the bulk when σ is within `sigma_tol` of 1 and its left and
    right singular vectors nearly agree (cosine above `cos_tol`): a perturbation
    of the start along it is carried through training unchanged. The cosine
    u_i · v_i does not depend on the joint sign of (u_i, v_i) that SVD leaves free.

    `bulk_size` and `logdet` mean something only for the full spectrum (all P
    triplets, e.g. from `singular_triplets`): given a partial one such as
    `top_singular`'s top k they count and sum over those k only, which is neither
    the bulk size nor log |det J|. From top-k triplets use only `singular_values`,
    `cosines`, `bulk` (per given direction) and `sigma_max`; the experiment saves
    only the first two and `sigma_max`.
    """
    cos = jnp.sum(u * v, axis=-2)
    bulk = (jnp.abs(s - 1) < sigma_tol) & (cos > cos_tol)
    return Spectrum(s, cos, bulk, jnp.sum(bulk, -1), s[..., 0], jnp.sum(jnp.log(s), -1))
