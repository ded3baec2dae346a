"""How sharp grokking is, from error-function fits (`grokjax.analysis.erf_fit`): the relative grokking gap, the
relative and absolute sharpness of Miller, Gleeson et al. ("Measuring sharpness in grokking", 2024), and straight
lines through them with the interval of their slope. numpy and scipy only, so figures can use it.

With the training curve's fit (t*_train, s_train) and a test (validation) curve's (t*_test, s_test, chance c):
  relative grokking gap   m     = t*_test / t*_train - 1
  relative sharpness      R_rel = s_test / s_train
  absolute sharpness      R_abs = 2 a s_test / sqrt(pi), a = (1 - c) / 2: the fitted test curve's largest slope
                                  (its derivative at t*), in accuracy per unit of time (epoch or step).
m and R_rel need both fits and t*_train > 0; R_abs the test fit only. NaN where they are undefined.
"""

from typing import NamedTuple

import numpy as np
from scipy import special, stats

REASONS = ("fitted", "never reaches the midpoint", "already at or above the midpoint at the first log",
           "too few finite points", "did not converge", "R^2 below the threshold",
           "sharper than the logs resolve (s at its bound)", "diverged in training")
"""Why a curve was or was not fitted (`grokjax.analysis.erf_fit`), by reason code."""
FITTED, NEVER, ABOVE, FEW, NOT_CONVERGED, POOR, TOO_SHARP, DIVERGED = range(len(REASONS))
DEFINITIONS = {
    "form": "A(t) = a erf(s (t - t*)) + b, a = (1 - c) / 2, b = (1 + c) / 2 for chance accuracy c; t* and s fitted by "
            "least squares (Levenberg-Marquardt), t in the schedule's unit (epochs or steps)",
    "relative_gap": "t*_test / t*_train - 1 (both fitted, t*_train > 0)",
    "relative_sharpness": "s_test / s_train (both fitted, t*_train > 0)",
    "absolute_sharpness": "2 a s_test / sqrt(pi): the fitted test curve's largest slope, accuracy per unit of time",
    "r2": "1 - SSE / SST over the logged points",
}


def curve_range(chance):
    """(a, b) of the curve rising from `chance` to 1 (as `erf_fit.curve_range`)."""
    chance = np.asarray(chance, np.float64)
    return (1 - chance) / 2, (1 + chance) / 2


def erf_curve(t, t_star, s, chance):
    """`a erf(s (t - t*)) + b` in numpy, for drawing fits."""
    a, b = curve_range(chance)
    return a * special.erf(s * (np.asarray(t, np.float64) - t_star)) + b


def relative_measures(train_t, train_s, train_ok, test_t, test_s, test_ok, test_chance) -> dict:
    """The relative grokking gap, relative sharpness and absolute sharpness (see the module) of paired fits, elementwise;
    `*_ok` mark the fits to use (reason 0)."""
    train_t, train_s, test_t, test_s = (np.asarray(x, np.float64) for x in (train_t, train_s, test_t, test_s))
    both = np.asarray(train_ok, bool) & np.asarray(test_ok, bool) & (train_t > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        gap = np.where(both, test_t / train_t - 1, np.nan)
        rel = np.where(both, test_s / train_s, np.nan)
    a, _ = curve_range(test_chance)
    absolute = np.where(np.asarray(test_ok, bool), 2 * a * test_s / np.sqrt(np.pi), np.nan)
    return {"relative_gap": gap, "relative_sharpness": rel, "absolute_sharpness": absolute}


class Line(NamedTuple):
    """A least-squares line y = intercept + slope x (on log10 of both in log-log), its slope's confidence interval
    (Student t with n - 2 degrees of freedom), Pearson's r and the number of points."""

    slope: float
    intercept: float
    slope_low: float
    slope_high: float
    r: float
    n: int
    log: bool


def line_fit(x, y, log: bool = False, level: float = 0.95) -> Line | None:
    """The least-squares line through the finite points (x, y) (in log-log: the positive ones, on log10), or None
    with fewer than 3 points or no spread in x."""
    x, y = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
    keep = np.isfinite(x) & np.isfinite(y) & ((x > 0) & (y > 0) if log else True)
    x, y = x[keep], y[keep]
    if log:
        x, y = np.log10(x), np.log10(y)
    if len(x) < 3 or np.ptp(x) == 0:
        return None
    fit = stats.linregress(x, y)
    half = stats.t.ppf(0.5 + level / 2, len(x) - 2) * fit.stderr
    return Line(float(fit.slope), float(fit.intercept), float(fit.slope - half), float(fit.slope + half),
                float(fit.rvalue), int(len(x)), log)


def line_values(line: Line, x) -> np.ndarray:
    """The line's y at `x` (in the data's own units: 10 ** (intercept + slope log10 x) in log-log)."""
    x = np.asarray(x, np.float64)
    if line.log:
        return 10 ** (line.intercept + line.slope * np.log10(x))
    return line.intercept + line.slope * x


def describe_line(line: Line | None, what: str) -> str:
    """'log-log slope of R_rel against m: -0.52 [-0.71, -0.33] (95% interval), r = -0.6, 57 runs', or why there is none."""
    if line is None:
        return f"{what}: too few fitted runs for a line"
    scale = "log-log slope" if line.log else "slope"
    return (f"{scale} of {what}: {line.slope:.3g} [{line.slope_low:.3g}, {line.slope_high:.3g}] (95% interval), "
            f"r = {line.r:.2f}, {line.n} runs")


TABLE_FIELDS = ("t_star_train", "s_train", "r2_train", "reason_train", "chance_train", "t_star_test", "s_test",
                "r2_test", "reason_test", "chance_test", "relative_gap", "relative_sharpness", "absolute_sharpness")


def pair_table(fits: dict, pair: int) -> dict:
    """Per run, the fits of one pair of a fits.npz (`fits` its arrays): both curves' t*, s, R^2, reason and chance,
    and the three measures (`TABLE_FIELDS`)."""
    i, j = int(fits["pair_test"][pair]), int(fits["pair_train"][pair])
    table = {f"{k}_{side}": np.asarray(fits[k][:, c]) for side, c in (("train", j), ("test", i))
             for k in ("t_star", "s", "r2", "reason")}
    for side, c in (("train", j), ("test", i)):
        table[f"chance_{side}"] = np.full(len(table["s_test"]), float(fits["chance"][c]))
    table.update({m: np.asarray(fits[m][:, pair]) for m in ("relative_gap", "relative_sharpness",
                                                            "absolute_sharpness")})
    return table


def choose_examples(table: dict, k: int = 6) -> np.ndarray:
    """Up to `k` runs with both curves fitted, at evenly spaced quantiles of the relative gap (smallest to largest),
    for a panel of example fits; indices into the table."""
    gap = table["relative_gap"]
    ok = np.flatnonzero(np.isfinite(gap))
    if not len(ok):
        return np.zeros(0, np.int64)
    order = ok[np.argsort(gap[ok], kind="stable")]
    return np.unique(order[np.round(np.linspace(0, len(order) - 1, min(k, len(order)))).astype(int)])


def trend_lines(table: dict) -> dict:
    """The lines of relative and absolute sharpness against the relative gap, linear and log-log (None where
    there are too few points), as dicts."""
    out = {}
    for m in ("relative_sharpness", "absolute_sharpness"):
        for scale in ("linear", "log-log"):
            line = line_fit(table["relative_gap"], table[m], log=scale == "log-log")
            out[f"{m} vs relative_gap, {scale}"] = None if line is None else line._asdict()
    return out


def collection(table: dict, axis_name: str, axis, t, train_curves, test_curves, source=None, run=None,
               n_examples: int = 6) -> dict:
    """The arrays of a sharpness collection (sharpness.npz): the per-run `table` of one pair (`sharpness.pair_table`),
    the value of the varied quantity per run (`axis`, e.g. the number of bits), where each run came from (`source`
    directory names and `run` rows), and the traces of a few example runs (`choose_examples`) at times `t`, so that
    figures need nothing else."""
    n = len(table["s_test"])
    examples = choose_examples(table, n_examples)
    return {**table, "axis_name": np.array(axis_name), "axis": np.asarray(axis, np.float64),
            "source": np.array([""] * n if source is None else source, dtype=str),
            "run": np.arange(n) if run is None else np.asarray(run), "example": examples,
            "example_t": np.asarray(t, np.float64), "example_train": np.asarray(train_curves)[examples],
            "example_test": np.asarray(test_curves)[examples]}


def collection_info(arrays: dict, pair: str, what: str, unit: str) -> dict:
    """sharpness.json of a collection: the lines through the measures (pooled over every run), the reasons per
    curve, and per value of the axis the runs, fits and median measures."""
    per_axis = []
    for value in np.unique(arrays["axis"]):
        at = arrays["axis"] == value
        both = at & np.isfinite(arrays["relative_gap"])
        med = lambda k: float(np.median(arrays[k][both])) if both.any() else None
        per_axis.append({"value": float(value), "runs": int(at.sum()), "both_fitted": int(both.sum()),
                         "median_relative_gap": med("relative_gap"),
                         "median_relative_sharpness": med("relative_sharpness"),
                         "median_absolute_sharpness": med("absolute_sharpness")})
    counts = {side: {REASONS[r]: int(np.sum(arrays[f"reason_{side}"] == r)) for r in range(len(REASONS))
                     if np.any(arrays[f"reason_{side}"] == r)} for side in ("train", "test")}
    return {"kind": "sharpness", "what": what, "pair": pair, "axis": str(arrays["axis_name"]), "unit": unit,
            "definitions": DEFINITIONS, "lines": trend_lines(arrays), "counts": counts,
            "per_axis": per_axis}


def collection_lines(info: dict) -> list[str]:
    """The printed summary of a collection: per axis value the medians, then the pooled lines."""
    axis = info["axis"]
    out = [f"{info['what']}: test curve '{info['pair']}' against training; fits per curve: "
           + "; ".join(f"{side} {c}" for side, c in info["counts"].items())]
    out.append(f"{axis:>10} {'runs':>5} {'fitted':>6} {'median m':>10} {'median R_rel':>13} {'median R_abs':>13}")
    fmt = lambda v: "-" if v is None else f"{v:.3g}"
    for row in info["per_axis"]:
        out.append(f"{row['value']:>10.6g} {row['runs']:>5} {row['both_fitted']:>6} {fmt(row['median_relative_gap']):>10} "
                   f"{fmt(row['median_relative_sharpness']):>13} {fmt(row['median_absolute_sharpness']):>13}")
    for key, line in info["lines"].items():
        what, scale = key.replace("relative_sharpness", "R_rel").replace("absolute_sharpness", "R_abs").replace(
            " vs relative_gap", " against m").rsplit(", ", 1)
        out.append("  " + describe_line(None if line is None else Line(**line), what if line else f"{what} ({scale})"))
    return out
