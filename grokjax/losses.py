"""Per-point classification losses of logits and integer labels, for the trainer to average (optax's convention).

`cross_entropy` is the softmax cross-entropy the trainer has always used (logsumexp minus the true logit).
`stablemax_cross_entropy` is StableMax ("Grokking at the edge of numerical stability", Prieto et al.;
reference: LucasPrietoAl/grokking-at-the-edge-of-numerical-stability `stablemax_cross_entropy`), which replaces
exp by s(x) = x + 1 (x ≥ 0), 1 / (1 - x) (x < 0), so the probabilities p_i = s(x_i) / Σ_j s(x_j) cannot
saturate to exactly 1 in floating point (softmax collapse). The reference computes in float64; here that is
`float64=True`, which needs jax's x64 mode (`jax.config.update("jax_enable_x64", True)` or the
`jax.enable_x64()` context at trace time); without it the computation stays in the logits' dtype.
"""

from functools import partial

import jax
import jax.numpy as jnp


def cross_entropy(logits, labels):
    """Softmax cross-entropy of each point: logsumexp(logits) - logits[label]."""
    true = jnp.take_along_axis(logits, labels[..., None], -1)[..., 0]
    return jax.nn.logsumexp(logits, -1) - true


def stablemax_cross_entropy(logits, labels, float64: bool = False):
    """StableMax cross-entropy of each point, -log(s(x_y) / Σ_j s(x_j)), computed as log Σ s - log s(x_y) with
    log s = log1p(x) or -log1p(-x) (the reference's log(s / Σ s), equal up to rounding, without underflow of the
    ratio). The reference's 1e-30 in 1 / (1 - x + 1e-30) is dropped: 1 - x ≥ 1 there, so it rounds away in float32
    and float64 alike. With `float64` and x64 enabled, computed in float64; returned in the logits' dtype."""
    x = logits.astype(jnp.float64) if float64 and jax.config.jax_enable_x64 else logits
    pos = x >= 0
    xp, xn = jnp.where(pos, x, 0), jnp.where(pos, 0, x)  # each branch sees a safe input, so no NaN gradients
    s = jnp.where(pos, xp + 1, 1 / (1 - xn))
    log_s = jnp.where(pos, jnp.log1p(xp), -jnp.log1p(-xn))
    true = jnp.take_along_axis(log_s, labels[..., None], -1)[..., 0]
    return (jnp.log(jnp.sum(s, -1)) - true).astype(logits.dtype)


LOSSES = {
    "cross_entropy": cross_entropy,
    "stablemax": stablemax_cross_entropy,
    "stablemax64": partial(stablemax_cross_entropy, float64=True),
}
"""The trainer's loss option: name -> per-point loss(logits, labels)."""
