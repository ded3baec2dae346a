"""Error-function fits: thousands of noisy synthetic curves recovered to within their statistical error (Fisher
information, numpy), noiseless ones exactly; the reasons for curves that cannot be fitted; the relative measures
and the lines through them against hand computations and numpy; the same fits through the runner."""

import jax
import numpy as np
import pytest
from scipy.special import erf

from grokjax.analysis.erf_fit import fit_program
from grokjax.analysis.sharpness import (ABOVE, DIVERGED, FEW, FITTED, NEVER, TOO_SHARP, erf_curve, line_fit,
                                        line_values, relative_measures)
from grokjax.run.fits import fit_named, fit_width

T = np.arange(0, 3001, 10.0)  # 301 logs, every 10 epochs, as a 3000-epoch sweep
NOISE = 0.02
WIDTH = 256
_fit = jax.jit(fit_program(T))


def fit(y, chance):
    """The program on every curve of y, in padded calls of WIDTH curves (one compilation for the whole module)."""
    n = len(y)
    rows = np.minimum(np.arange(-(-n // WIDTH) * WIDTH), n - 1).reshape(-1, WIDTH)
    parts = [jax.tree.map(np.asarray, _fit(y[r], np.asarray(chance, np.float32)[r])) for r in rows]
    return jax.tree.map(lambda *x: np.concatenate(x)[:n], *parts)


def synthetic(n, chance, seed=0, noise=NOISE):
    """n curves with t* uniform in [300, 2500] and s log-uniform in [10^-2.5, 10^-1.2] per epoch (transitions from
    about 500 epochs wide to a log interval), plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    t_star = rng.uniform(300, 2500, n)
    s = 10 ** rng.uniform(-2.5, -1.2, n)
    y = erf_curve(T[None], t_star[:, None], s[:, None], chance) + rng.normal(0, noise, (n, len(T))) * (noise > 0)
    return t_star, s, y.astype(np.float32)


def fisher_sd(t_star, s, chance):
    """Standard deviations of t* and log s from the Fisher information of least squares with NOISE: the inverse of
    J^T J / NOISE^2, J the derivatives of the curve at the truth (numpy)."""
    a = (1 - chance) / 2
    z = s[:, None] * (T[None] - t_star[:, None])
    slope = a * 2 / np.sqrt(np.pi) * np.exp(-z**2)
    jac = np.stack([-s[:, None] * slope, z * slope], -1)
    cov = np.linalg.inv(np.einsum("nti,ntj->nij", jac, jac) / NOISE**2)
    return np.sqrt(cov[:, 0, 0]), np.sqrt(cov[:, 1, 1])


def test_thousands_of_noisy_curves_are_recovered_within_their_statistical_error():
    """2048 curves (parity's chance 1/2) fitted in one call: every curve is fitted, and the errors of t* and log s
    divided by their Fisher standard deviations look standard normal: spread within 10% of 1 and none beyond 5.5
    (the largest of 4096 standard normals exceeds 5.5 with probability 2e-4)."""
    n, chance = 2048, 0.5
    t_star, s, y = synthetic(n, chance)
    out = fit(y, np.full(n, chance))
    assert np.all(out.reason == FITTED)
    sd_t, sd_v = fisher_sd(t_star, s, chance)
    z_t, z_v = (out.t_star - t_star) / sd_t, (np.log(out.s) - np.log(s)) / sd_v
    for z in (z_t, z_v):
        assert 0.9 < np.std(z) < 1.1 and np.abs(np.mean(z)) < 0.1 and np.abs(z).max() < 5.5
    assert np.all(out.r2 > 0.97)


@pytest.mark.parametrize("chance", [0.0, 1 / 97])
def test_noiseless_curves_are_recovered_exactly(chance):
    """Without noise: t* within 1e-3 epochs per 1000 and s within 0.1% (float32), for other chance levels too."""
    t_star, s, y = synthetic(256, chance, seed=1, noise=0)
    out = fit(y, np.full(len(y), chance))
    assert np.all(out.reason == FITTED)
    np.testing.assert_allclose(out.t_star, t_star, rtol=1e-4)
    np.testing.assert_allclose(out.s, s, rtol=1e-3)


def test_curves_that_cannot_be_fitted_say_why():
    rng = np.random.default_rng(2)
    flat = 0.5 + rng.normal(0, 0.01, len(T))  # at chance: never reaches the midpoint 0.75
    above = erf_curve(T, -200, 0.01, 0.5)  # already past the midpoint at the first log
    step = np.where(T < 1005, 0.5, 1.0)  # the whole jump between two logs
    few = np.full(len(T), np.nan)
    few[:3] = [0.5, 0.8, 1.0]
    late = erf_curve(T, 2000, 0.01, 0.5)
    y = np.stack([flat, above, step, few, late, np.full(len(T), 1.0)]).astype(np.float32)
    out = fit(y, np.full(len(y), 0.5))
    assert out.reason.tolist() == [NEVER, ABOVE, TOO_SHARP, FEW, FITTED, ABOVE]
    assert np.isnan(out.t_star[[0, 1, 3, 5]]).all() and np.isfinite(out.t_star[[2, 4]]).all()
    assert abs(out.t_star[2] - 1000) <= 5  # the jump's time is still known to within half a log interval


def test_relative_measures_match_hand_computation():
    """t*_train 100, t*_test 400: m = 3; s 0.05 and 0.01: R_rel = 0.2; chance 1/2: R_abs = 2 (1/4) 0.01 / sqrt(pi),
    which is the largest slope of the test curve (numerical derivative); undefined where a fit is missing or
    t*_train <= 0."""
    out = relative_measures([100, 100, -5, 100], [0.05] * 4, [True, False, True, True], [400, 400, 400, 400],
                            [0.01] * 4, [True, True, True, False], 0.5)
    np.testing.assert_allclose(out["relative_gap"], [3, np.nan, np.nan, np.nan])
    np.testing.assert_allclose(out["relative_sharpness"], [0.2, np.nan, np.nan, np.nan])
    r_abs = 2 * 0.25 * 0.01 / np.sqrt(np.pi)
    np.testing.assert_allclose(out["absolute_sharpness"], [r_abs, r_abs, r_abs, np.nan])
    t = np.linspace(0, 800, 80001)
    assert abs(np.max(np.gradient(0.25 * erf(0.01 * (t - 400)) + 0.75, t)) - r_abs) < 1e-9


def test_lines_and_their_slope_intervals_match_numpy():
    rng = np.random.default_rng(3)
    x = 10 ** rng.uniform(0, 2, 40)
    y = 3 * x**-0.5 * np.exp(rng.normal(0, 0.1, 40))
    line = line_fit(np.append(x, [np.nan, -1.0]), np.append(y, [1.0, 1.0]), log=True)  # NaN and x <= 0 left out
    lx, ly = np.log10(x), np.log10(y)
    slope, intercept = np.polyfit(lx, ly, 1)
    residual = ly - (intercept + slope * lx)
    se = np.sqrt(residual @ residual / (len(x) - 2) / np.sum((lx - lx.mean()) ** 2))
    half = 2.0243941645751367 * se  # Student t, 38 degrees of freedom, 97.5%
    assert line.n == 40 and abs(line.slope - slope) < 1e-12 and abs(line.intercept - intercept) < 1e-12
    assert abs(line.slope_low - (slope - half)) < 1e-9 and abs(line.slope_high - (slope + half)) < 1e-9
    np.testing.assert_allclose(line_values(line, [10.0]), [10 ** (intercept + slope)])
    assert line_fit([1, 2], [1, 2]) is None and line_fit([1, 1, 1], [1, 2, 3]) is None


def test_the_runner_gives_every_curve_the_fit_of_the_compiled_program():
    """fit_named pads its calls (here 300 curves in calls of 128) and keeps runs and curves apart: each curve gets
    the fit of one call of the program, with its own chance; runs marked diverged are not fitted; the measures of
    each pair are `relative_measures` of its two curves."""
    _, _, y = synthetic(300, 0.5, seed=4)
    y = y.reshape(100, 3, len(T))
    chance = {"a": 0.5, "b": 0.5, "c": 0.25}
    skip = np.arange(100) < 5
    out = fit_named(T, {k: y[:, i] for i, k in enumerate(chance)}, chance, [("b", "b", "a"), ("c", "c", "a")],
                    skip=skip, width=128)
    direct = fit(y.reshape(300, -1), np.tile(list(chance.values()), 100))
    direct = {k: getattr(direct, k).reshape(100, 3) for k in ("t_star", "s", "reason")}
    assert out["t_star"].shape == (100, 3) and list(out["curves"]) == ["a", "b", "c"]
    np.testing.assert_allclose(out["t_star"][~skip], direct["t_star"][~skip], rtol=1e-6)
    np.testing.assert_allclose(out["s"][~skip], direct["s"][~skip], rtol=1e-5)
    assert np.all(out["reason"][skip] == DIVERGED) and np.isnan(out["t_star"][skip]).all()
    ok = (direct["reason"] == FITTED) & ~skip[:, None]
    for p, i in enumerate((1, 2)):
        expected = relative_measures(direct["t_star"][:, 0], direct["s"][:, 0], ok[:, 0], direct["t_star"][:, i],
                                     direct["s"][:, i], ok[:, i], list(chance.values())[i])
        for k, v in expected.items():
            np.testing.assert_allclose(out[k][:, p], v, rtol=1e-5)
    assert fit_width(3) == 4 and fit_width(5000) == 1024
