"""Error-function fits of accuracy curves, thousands at once: the jump time t* and sharpness s of every run.

Miller, Gleeson et al., "Measuring sharpness in grokking" (2024), fit `A(t) = a erf(s (t - t*)) + b` to a run's
training and validation accuracy. As there, a and b are fixed by the range of accuracy: for chance accuracy c (1/K
for K classes, 1/2 for parity, 0 for the linear teacher's loss-threshold accuracy) `a = (1 - c) / 2` and
`b = (1 + c) / 2`, so the curve rises from c to 1 and t* is where it crosses the midpoint b. Only t* and s are
fitted, by least squares.

The fit is Levenberg-Marquardt (Marquardt's diagonal scaling) on (u, v) = ((t* - t_0) / T, log(s T)), time
measured from the first log t_0 in units of the span T: s > 0 by construction and both parameters are of order
one. It runs a fixed number of iterations in a `lax.scan`, vmapped over curves, so one compiled call fits every
run of a sweep. The start is read off the curve: u from its first crossing of the midpoint (linear interpolation
between logs), s from the time it takes to rise from erf = -1/2 to erf = +1/2 (both first crossings).

A curve is reported with a `reason` (`grokjax.analysis.sharpness.REASONS`): 0 fitted, or why not:
  1 never reaches the midpoint; 2 already at or above it at the first log; 3 fewer than MIN_POINTS finite points;
  4 did not converge (non-finite, or the residual is not orthogonal to the Jacobian's columns: the largest
    cosine |J_k . r| / (|J_k| |r|) is above `tol`, unless the residual is below float32 rounding);
  5 R^2 below `min_r2`;
  6 sharper than the logs resolve: s reached its bound MAX_SPAN_STEPS / (shortest log interval), where the whole
    jump falls between two logs and only a lower bound of s is measurable.
t*, s and R^2 are returned for every curve (NaN where no fit was attempted); use them where `reason == 0`.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import erf

from grokjax.analysis.sharpness import ABOVE, FEW, FITTED, NEVER, NOT_CONVERGED, POOR, TOO_SHARP

MIN_POINTS = 4
HALF_RISE = 0.4769362762044699
"""erf(HALF_RISE) = 1/2: the curve goes from b - a/2 to b + a/2 between t* -+ HALF_RISE / s."""
MAX_SPAN_STEPS = 4.0
"""The largest s is this over the shortest log interval: the erf then goes from -erf(2) to erf(2) (+-0.995) between
two logs with t* midway, so the data cannot tell larger values apart."""
MIN_ST = 1e-3
"""The smallest s T (T the span of the logs): a transition a thousand times wider than the trace."""
DEFAULT_ITERATIONS = 60
DEFAULT_MIN_R2 = 0.9
DEFAULT_TOL = 1e-3


class ErfFit(NamedTuple):
    """Per curve (leading axes of the fitted accuracies): jump time, sharpness, R^2 and reason code (0: fitted)."""

    t_star: jax.Array
    s: jax.Array
    r2: jax.Array
    reason: jax.Array


def curve_range(chance):
    """(a, b) of `A = a erf(s (t - t*)) + b` rising from `chance` to 1."""
    return (1 - chance) / 2, (1 + chance) / 2


def erf_curve(t, t_star, s, chance):
    """The fitted form at times `t` (jnp; broadcasts)."""
    a, b = curve_range(chance)
    return a * erf(s * (t - t_star)) + b


def _first_crossing(t, y, ok, level):
    """(time, exists): where the finite points `y` (mask `ok`) first reach `level`, linearly interpolated from the
    point before when that one is finite and below; the first log's time if the first finite point is already there."""
    above = ok & (y >= level)
    i = jnp.argmax(above)
    prev = jnp.maximum(i - 1, 0)
    y0, y1, t0, t1 = y[prev], y[i], t[prev], t[i]
    interpolate = (i > 0) & ok[prev] & (y0 < level)
    frac = jnp.where(interpolate, (level - y0) / jnp.where(y1 > y0, y1 - y0, 1.0), 1.0)
    return jnp.where(interpolate, t0 + jnp.clip(frac, 0, 1) * (t1 - t0), t1), jnp.any(above)


def fit_erf(t, y, chance, iterations: int = DEFAULT_ITERATIONS, min_r2: float = DEFAULT_MIN_R2,
            tol: float = DEFAULT_TOL) -> ErfFit:
    """Fit one accuracy curve `y` (logs,) at times `t` (logs,), increasing; NaN entries are left out. `vmap` it over
    curves (see `fit_erf_batch`)."""
    t = jnp.asarray(t, jnp.float32)
    y = jnp.asarray(y, jnp.float32)
    chance = jnp.asarray(chance, jnp.float32)
    a, b = curve_range(chance)
    ok = jnp.isfinite(y)
    y0 = jnp.where(ok, y, 0.0)
    n_ok = jnp.sum(ok)
    t_first, t_last = t[0], t[-1]
    span = jnp.maximum(t_last - t_first, 1e-30)
    tau = (t - t_first) / span
    gaps = jnp.diff(tau)
    shortest = jnp.min(jnp.where(gaps > 0, gaps, jnp.inf))
    v_max = jnp.log(MAX_SPAN_STEPS / shortest)
    v_min = jnp.log(MIN_ST)

    first_ok = jnp.argmax(ok)
    t_mid, reaches = _first_crossing(tau, y0, ok, b)
    t_lo, _ = _first_crossing(tau, y0, ok, b - a / 2)
    t_hi, hi_reached = _first_crossing(tau, y0, ok, b + a / 2)
    width = jnp.maximum(jnp.where(hi_reached, t_hi, 1.0) - t_lo, shortest / 2)
    theta0 = jnp.stack([t_mid, jnp.clip(jnp.log(2 * HALF_RISE / width), v_min, v_max)])

    def residual_and_jacobian(theta):
        u, v = theta[0], theta[1]
        s = jnp.exp(v)
        z = s * (tau - u)
        r = jnp.where(ok, a * erf(z) + b - y0, 0.0)
        slope = jnp.where(ok, a * (2 / jnp.sqrt(jnp.pi)) * jnp.exp(-z * z), 0.0)
        return r, jnp.stack([-s * slope, z * slope], axis=1)  # d r / d u, d r / d v

    def step(carry, _):
        theta, r, jac, mu = carry
        sse = r @ r
        jtj, grad = jac.T @ jac, jac.T @ r
        damped = jtj + mu * jnp.diag(jnp.diag(jtj)) + 1e-12 * jnp.eye(2)
        delta = -jnp.linalg.solve(damped, grad)
        trial = jnp.stack([theta[0] + delta[0], jnp.clip(theta[1] + delta[1], v_min, v_max)])
        r_new, jac_new = residual_and_jacobian(trial)
        better = jnp.isfinite(r_new @ r_new) & (r_new @ r_new < sse)
        keep = lambda new, old: jnp.where(better, new, old)
        mu = jnp.where(better, jnp.maximum(mu / 3, 1e-9), jnp.minimum(mu * 4, 1e9))
        return (keep(trial, theta), keep(r_new, r), keep(jac_new, jac), mu), None

    r, jac = residual_and_jacobian(theta0)
    (theta, r, jac, _), _ = jax.lax.scan(step, (theta0, r, jac, jnp.float32(1e-3)), length=iterations)

    sse = r @ r
    mean = jnp.sum(y0) / jnp.maximum(n_ok, 1)
    sst = jnp.sum(jnp.where(ok, (y0 - mean) ** 2, 0.0))
    r2 = 1 - sse / jnp.maximum(sst, 1e-30)
    norms = jnp.sqrt(jnp.sum(jac * jac, 0)) * jnp.sqrt(sse)
    cosine = jnp.max(jnp.abs(jac.T @ r) / jnp.maximum(norms, 1e-30))
    tiny = sse <= n_ok * 1e-12  # a residual at float32 rounding: its direction means nothing
    converged = jnp.all(jnp.isfinite(theta)) & jnp.isfinite(sse) & ((cosine <= tol) | tiny)
    reason = jnp.select(
        [n_ok < MIN_POINTS, y0[first_ok] >= b, ~reaches, theta[1] >= v_max - 1e-4, ~converged, r2 < min_r2],
        [FEW, ABOVE, NEVER, TOO_SHARP, NOT_CONVERGED, POOR], FITTED).astype(jnp.int32)
    attempted = (n_ok >= MIN_POINTS) & (y0[first_ok] < b) & reaches
    nan = jnp.float32(jnp.nan)
    return ErfFit(t_star=jnp.where(attempted, t_first + theta[0] * span, nan),
                  s=jnp.where(attempted, jnp.exp(theta[1]) / span, nan),
                  r2=jnp.where(attempted, r2, nan), reason=reason)


def fit_program(t, iterations: int = DEFAULT_ITERATIONS, min_r2: float = DEFAULT_MIN_R2, tol: float = DEFAULT_TOL):
    """The runner's program (`grokjax.run.runner`): a pure function of a batch of curves `y` (curves, logs) and their
    `chance` (curves,) that fits each (`fit_erf`, vmapped), all sharing the times `t` (logs,)."""
    t = np.asarray(t, np.float32)
    return jax.vmap(lambda y, chance: fit_erf(t, y, chance, iterations, min_r2, tol))
