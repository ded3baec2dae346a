"""Grokking accelerators as optax gradient transformations, to chain in front of any optimizer.

Why transformations: a filter or projection composes with Adam, AdamW or SGD alike (`optax.chain(accelerator,
optimizer)`), and its hyperparameters are plain (possibly traced) arrays, so a vmapped grid over them is one
compiled program. Each follows its reference implementation step for step:

- `grokfast_ema(alpha, lamb)`: Grokfast-EMA, ironjr/grokfast `gradfilter_ema`. The filter h starts as the first
  gradient (then, as in the reference, the first step still computes h = alpha h + (1 - alpha) g, equal to g up to
  one rounding); the output is g + lamb h.
- `grokfast_ma(window, lamb, warmup)`: Grokfast-MA, `gradfilter_ma` with filter type "mean": the current gradient
  joins a queue of the last `window`; with `warmup` (the reference's default) nothing changes until the queue is
  full, then g + lamb mean(queue); without it, g + lamb mean(queue so far) from the first step.
- `orthograd()`: ⊥Grad, LucasPrietoAl/grokking-at-the-edge-of-numerical-stability `OrthoGrad`: per parameter
  tensor g⊥ = g - (w·g / (w·w + 1e-30)) w, rescaled by |g| / (|g⊥| + 1e-30); every leaf (the reference projects
  every parameter with a gradient).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

TINY = 1e-30
"""The reference ⊥Grad's epsilon, both in w·w and in the rescaling's |g⊥|."""


class EmaState(NamedTuple):
    count: jax.Array  # updates done so far
    ema: optax.Updates  # the filtered gradient h


class MaState(NamedTuple):
    count: jax.Array  # updates done so far
    window: optax.Updates  # the last gradients, a ring of `window` slots per leaf (slot count % window is next)


def grokfast_ema(alpha, lamb) -> optax.GradientTransformation:
    """Grokfast-EMA: h ← alpha h + (1 - alpha) g (h starts as the first g), output g + lamb h; `alpha` and `lamb`
    may be traced arrays."""

    def init(params):
        return EmaState(jnp.zeros((), jnp.int32), jax.tree.map(jnp.zeros_like, params))

    def update(updates, state, params=None):
        del params
        first = state.count == 0
        ema = jax.tree.map(lambda h, g: alpha * jnp.where(first, g, h) + (1 - alpha) * g, state.ema, updates)
        out = jax.tree.map(lambda g, h: g + lamb * h, updates, ema)
        return out, EmaState(state.count + 1, ema)

    return optax.GradientTransformation(init, update)


def grokfast_ma(window: int, lamb, warmup: bool = True) -> optax.GradientTransformation:
    """Grokfast-MA: g + lamb · mean of the last `window` gradients (the current one included), applied once
    `window` gradients have been seen (with `warmup`; without, from the first step over those seen so far).
    `window` is static (it sizes the state); `lamb` may be a traced array."""
    if window < 1:
        raise ValueError(f"The Grokfast-MA window must be a positive integer, got {window}.")

    def init(params):
        ring = jax.tree.map(lambda p: jnp.zeros((window, *p.shape), p.dtype), params)
        return MaState(jnp.zeros((), jnp.int32), ring)

    def update(updates, state, params=None):
        del params
        ring = jax.tree.map(lambda r, g: r.at[state.count % window].set(g), state.window, updates)
        seen = jnp.minimum(state.count + 1, window)
        on = seen == window if warmup else True
        out = jax.tree.map(lambda g, r: jnp.where(on, g + lamb * (jnp.sum(r, 0) / seen), g), updates, ring)
        return out, MaState(state.count + 1, ring)

    return optax.GradientTransformation(init, update)


def orthogonalize(g, w):
    """One tensor's ⊥Grad: g without its component along w, rescaled to the norm of g (elementwise sums, not a
    dot, so no reduced matmul precision on accelerators)."""
    proj = jnp.sum(w * g) / (jnp.sum(w * w) + TINY)
    g_orth = g - proj * w
    norm = lambda x: jnp.sqrt(jnp.sum(x * x))
    return g_orth * (norm(g) / (norm(g_orth) + TINY))


def orthograd() -> optax.GradientTransformation:
    """⊥Grad on every parameter tensor (needs `params` in `update`); stateless."""

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("orthograd needs the parameters: call update(updates, state, params).")
        return jax.tree.map(orthogonalize, updates, params), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)
