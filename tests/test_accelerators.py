"""Accelerators and StableMax: each filter against hand-computed steps, ⊥Grad's projection, StableMax against
numpy and finite differences, and every transformation chained with Adam under vmap over its hyperparameters."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from grokjax.accelerators import grokfast_ema, grokfast_ma, orthograd
from grokjax.losses import LOSSES, cross_entropy

stablemax_cross_entropy = jax.jit(LOSSES["stablemax"], static_argnames="float64")

RNG = np.random.default_rng(0)
GRADS = [{"w": RNG.normal(size=3), "v": RNG.normal(size=(2, 2))} for _ in range(6)]  # a toy gradient sequence
PARAMS = {"w": jnp.ones(3), "v": jnp.ones((2, 2))}


def filtered(tx, grads=GRADS):
    """The outputs of `tx` on the gradient sequence, step by step (float32 in, numpy out)."""
    state, outs = tx.init(PARAMS), []
    for g in grads:
        out, state = jax.jit(tx.update)(jax.tree.map(jnp.float32, g), state, PARAMS)
        outs.append(jax.tree.map(np.asarray, out))
    return outs


def assert_trees_close(a, b, **tol):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, **tol), a, b)


def test_ema_by_hand():
    alpha, lamb = 0.9, 2.0
    h, expected = None, []
    for g in GRADS:
        h = g if h is None else {k: alpha * h[k] + (1 - alpha) * g[k] for k in g}  # h starts as the first g
        expected.append({k: g[k] + lamb * h[k] for k in g})
    assert_trees_close(filtered(grokfast_ema(jnp.float32(alpha), jnp.float32(lamb))), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("warmup", [True, False])
def test_ma_by_hand(warmup):
    window, lamb = 3, 5.0
    expected = []
    for t, g in enumerate(GRADS):
        last = GRADS[max(0, t + 1 - window):t + 1]
        on = len(last) == window or not warmup  # with warmup, unchanged until the window is full
        expected.append({k: g[k] + lamb * np.mean([x[k] for x in last], 0) if on else g[k] for k in g})
    outs = filtered(grokfast_ma(window, jnp.float32(lamb), warmup))
    assert_trees_close(outs, expected, rtol=1e-5, atol=1e-6)
    if warmup:
        assert_trees_close(outs[:window - 1], GRADS[:window - 1], rtol=1e-6)


def test_orthograd_projects_and_rescales():
    g, w = {"a": RNG.normal(size=(4, 5)), "b": RNG.normal(size=7)}, {"a": RNG.normal(size=(4, 5)), "b": jnp.zeros(7)}
    out, _ = jax.jit(orthograd().update)(jax.tree.map(jnp.float32, g), optax.EmptyState(), jax.tree.map(jnp.float32, w))
    a = np.asarray(out["a"], np.float64)
    assert abs(np.sum(a * w["a"])) < 1e-5 * np.linalg.norm(a) * np.linalg.norm(w["a"])
    np.testing.assert_allclose(np.linalg.norm(a), np.linalg.norm(g["a"]), rtol=1e-5)
    g_orth = g["a"] - np.sum(g["a"] * w["a"]) / np.sum(w["a"] ** 2) * w["a"]
    np.testing.assert_allclose(a, g_orth * np.linalg.norm(g["a"]) / np.linalg.norm(g_orth), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(out["b"], g["b"], rtol=1e-6)  # zero weights: nothing to project out
    with pytest.raises(ValueError):
        orthograd().update(g, optax.EmptyState())


def numpy_stablemax(x, y):
    s = np.where(x < 0, 1 / (1 - np.minimum(x, 0)), x + 1)
    return -np.log(s / s.sum(-1, keepdims=True))[np.arange(len(y)), y]


LOGITS = np.concatenate([RNG.normal(scale=3, size=(6, 5)), [[0.0, -1.0, 1.0, -30.0, 40.0]]])
LABELS = np.array([0, 1, 2, 3, 4, 0, 3])


def test_stablemax_formula():
    expected = numpy_stablemax(LOGITS, LABELS)
    got = stablemax_cross_entropy(jnp.float32(LOGITS), jnp.asarray(LABELS))
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    # without x64, float64=True is the float32 computation
    np.testing.assert_array_equal(stablemax_cross_entropy(jnp.float32(LOGITS), jnp.asarray(LABELS), float64=True), got)
    with jax.enable_x64(True):
        got64 = stablemax_cross_entropy(jnp.float64(LOGITS), jnp.asarray(LABELS), float64=True)
        assert got64.dtype == jnp.float64
        np.testing.assert_allclose(got64, expected, rtol=1e-13)


def test_stablemax_gradient_against_finite_differences():
    """In float64, logits at 0 and -1 included (each branch of s sees a safe input: no NaN, the right slope)."""
    with jax.enable_x64(True):
        mean_loss = lambda x: jnp.mean(stablemax_cross_entropy(x, jnp.asarray(LABELS), float64=True))
        grad = np.asarray(jax.jit(jax.grad(mean_loss))(jnp.float64(LOGITS)))
        h, fd = 1e-6, np.zeros_like(LOGITS)
        for i in np.ndindex(LOGITS.shape):
            e = np.zeros_like(LOGITS)
            e[i] = h
            fd[i] = (numpy_stablemax(LOGITS + e, LABELS).mean() - numpy_stablemax(LOGITS - e, LABELS).mean()) / (2 * h)
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-8)


def test_cross_entropy_is_softmax_cross_entropy():
    x, y = jnp.float32(LOGITS), jnp.asarray(LABELS)
    expected = jax.jit(optax.softmax_cross_entropy_with_integer_labels)(x, y)
    np.testing.assert_allclose(jax.jit(cross_entropy)(x, y), expected, rtol=1e-6)
    assert set(LOSSES) == {"cross_entropy", "stablemax", "stablemax64"}


TARGET = {"w": jnp.float32([0.5, -2.0, 3.0]), "v": jnp.float32([[1.0, -1.0], [0.0, 2.0]])}
ACCELERATORS = {  # name -> (accelerator of a hyperparameter array (lr, alpha, lamb), grid of them)
    "ema": (lambda hp: grokfast_ema(hp[1], hp[2]), [[1e-2, 0.9, 2.0], [1e-2, 0.98, 0.5], [3e-2, 0.5, 0.0]]),
    "ma": (lambda hp: grokfast_ma(2, hp[2]), [[1e-2, 0.0, 5.0], [1e-2, 0.0, 1.0], [3e-2, 0.0, 0.0]]),
    "ortho": (lambda hp: orthograd(), [[1e-2, 0.0, 0.0], [3e-2, 0.0, 0.0]]),
}


def adam_run(hp, accelerator=None):
    """Five steps of (accelerator +) Adam with learning rate hp[0] on a quartic bowl; the final parameters."""
    tx = optax.chain(*([accelerator(hp)] if accelerator else []), optax.adam(hp[0]))

    def step(carry, _):
        params, state = carry
        grads = jax.grad(lambda p: sum(jnp.sum((p[k] - TARGET[k]) ** 4) for k in p))(params)
        updates, state = tx.update(grads, state, params)
        return (optax.apply_updates(params, updates), state), None

    return jax.lax.scan(step, (PARAMS, tx.init(PARAMS)), length=5)[0][0]


@pytest.mark.parametrize("name", ACCELERATORS)
def test_chains_with_adam_under_vmap(name):
    """vmap over the hyperparameter grid (one program) gives each grid point's unvmapped run, and the
    accelerator changes the run (except Grokfast with λ = 0, which is plain Adam)."""
    accelerator, grid = ACCELERATORS[name]
    run = jax.jit(lambda hp: adam_run(hp, accelerator))
    grid = jnp.float32(grid)
    batched = jax.vmap(run)(grid)
    plain = jax.jit(adam_run)
    for i, hp in enumerate(grid):
        assert_trees_close(jax.tree.map(lambda x: x[i], batched), run(hp), rtol=1e-5, atol=1e-7)
        same = name != "ortho" and hp[2] == 0
        assert np.allclose(batched["w"][i], plain(hp)["w"], rtol=1e-6) == same
