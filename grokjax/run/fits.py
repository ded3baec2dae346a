"""Error-function fits of every accuracy curve of a finished sweep (`grokjax.analysis.erf_fit`), saved beside it.

For every run: the training accuracy, the held-out (validation) accuracy when the sweep has held-out points, and
each evaluation set's accuracy on its whole table ("set <name>"). Each is fitted with chance 1/K for K classes;
then every test curve is paired with the training curve for the relative grokking gap, relative and absolute
sharpness (`grokjax.analysis.sharpness`). All curves go through the runner as one compiled program.

fits.npz holds `run` (rows of seeds.npz), `epochs` (the log times, in the schedule's unit), `curves` (names) and
`chance` per curve; `t_star`, `s`, `r2`, `reason` (runs, curves) (reason 0: fitted; `REASONS` in fits.json);
`pairs` (names of the test curves), `pair_test` and `pair_train` (curve indices) and `relative_gap`,
`relative_sharpness`, `absolute_sharpness` (runs, pairs). fits.json: the definitions, the settings, the counts
of each reason per curve and the lines through the measures. Both are written together or not at all; fitting
again with the same settings finds them and does nothing (so a script may call it on every run), `overwrite`
fits again.
"""

import sys
import time
from pathlib import Path

import jax
import numpy as np

from grokjax.analysis import sharpness
from grokjax.analysis.erf_fit import DEFAULT_ITERATIONS, DEFAULT_MIN_R2, DEFAULT_TOL, fit_program
from grokjax.analysis.sharpness import DEFINITIONS, DIVERGED, FITTED, REASONS
from grokjax.errors import UserError
from grokjax.run import runner, storage
from grokjax.run.outdir import guard, locked, write_together
from grokjax.run.results import diverged_warning, load_sweep, read_json

FILES = ("fits.npz", "fits.json")
FIT_WIDTH = 1024
"""Curves per compiled call (fewer curves: the next power of two), so memory stays bounded and few shapes compile."""
MEASURES = ("relative_gap", "relative_sharpness", "absolute_sharpness")


def fit_width(n: int) -> int:
    """Curves per call for `n` curves: FIT_WIDTH, or the next power of two at or above n if smaller."""
    return int(min(FIT_WIDTH, 2 ** int(np.ceil(np.log2(max(n, 1))))))


def fit_curves(t, y, chance, iterations: int = DEFAULT_ITERATIONS, min_r2: float = DEFAULT_MIN_R2,
               tol: float = DEFAULT_TOL, width: int | None = None, workers: int = 1, timing: dict | None = None) -> dict:
    """Fit every curve of `y` (..., logs) at times `t` (logs,), `chance` broadcasting against y's leading axes:
    `erf_fit.ErfFit` fields as numpy arrays of y's leading shape, through the runner (`width` curves per call,
    default `fit_width`; `workers` processes on a one-device CPU). `timing`, if given, gets the compile seconds."""
    y = np.asarray(y, np.float32)
    lead = y.shape[:-1]
    flat = y.reshape(-1, y.shape[-1])
    chance = np.ascontiguousarray(np.broadcast_to(np.asarray(chance, np.float32), lead).reshape(-1))
    if not len(flat):
        return {k: np.zeros(lead) for k in ("t_star", "s", "r2", "reason")}
    program = (fit_program, (np.asarray(t, np.float32), iterations, min_r2, tol))
    out, compiled = runner.map_program(program, (flat, chance), width or fit_width(len(flat)), workers, what="curve",
                                       option="the curves per call")
    if timing is not None:
        timing["compile_seconds"] = compiled.seconds
    return {k: np.asarray(v).reshape(lead) for k, v in out._asdict().items()}


def fit_named(t, curves: dict, chance: dict, pairs: list[tuple[str, str, str]], skip=None, **settings) -> dict:
    """The arrays of fits.npz for named curves (name -> (runs, logs)) with their chance accuracies, and `pairs`
    (pair name, test curve, training curve) for the relative measures; runs marked in `skip` (runs,) get the
    reason DIVERGED on every curve."""
    names = list(curves)
    y = np.stack([np.asarray(curves[k], np.float32) for k in names], axis=1)  # (runs, curves, logs)
    c = np.array([chance[k] for k in names], np.float32)
    fit = fit_curves(t, y, c[None, :], **settings)
    if skip is not None:
        skip = np.asarray(skip, bool)
        fit["reason"] = np.where(skip[:, None], DIVERGED, fit["reason"])
        for k in ("t_star", "s", "r2"):
            fit[k] = np.where(skip[:, None], np.nan, fit[k])
    ok = fit["reason"] == FITTED
    arrays = {"epochs": np.asarray(t), "curves": np.array(names), "chance": c,
              **{k: np.asarray(v, np.float32) for k, v in fit.items() if k != "reason"},
              "reason": fit["reason"].astype(np.int8), "pairs": np.array([p[0] for p in pairs], dtype=str),
              "pair_test": np.array([names.index(p[1]) for p in pairs], np.int32),
              "pair_train": np.array([names.index(p[2]) for p in pairs], np.int32)}
    per_pair = [sharpness.relative_measures(fit["t_star"][:, j], fit["s"][:, j], ok[:, j], fit["t_star"][:, i],
                                            fit["s"][:, i], ok[:, i], c[i])
                for i, j in zip(arrays["pair_test"], arrays["pair_train"])]
    for m in MEASURES:
        arrays[m] = np.stack([p[m] for p in per_pair], axis=1) if per_pair else np.zeros((len(y), 0))
    return arrays


def summary(arrays: dict) -> dict:
    """Counts of each reason per curve, and per pair the lines (linear and log-log) of relative and absolute
    sharpness against the relative gap."""
    counts = {str(name): {REASONS[r]: int(np.sum(arrays["reason"][:, i] == r))
                          for r in range(len(REASONS)) if np.any(arrays["reason"][:, i] == r)}
              for i, name in enumerate(arrays["curves"])}
    lines = {str(name): sharpness.trend_lines(sharpness.pair_table(arrays, p)) for p, name in enumerate(arrays["pairs"])}
    return {"counts": counts, "lines": lines}


def summary_lines(arrays: dict, info: dict) -> list[str]:
    """Printed summary: per curve how many were fitted and why the others were not; per pair the median measures
    and the log-log slopes."""
    out = []
    for name, counts in info["counts"].items():
        n = sum(counts.values())
        out.append(f"{name}: {counts.get('fitted', 0)} of {n} fitted" + "".join(
            f"; {v} {k}" for k, v in counts.items() if k != "fitted"))
    for p, name in enumerate(arrays["pairs"]):
        gap, rel, ab = (arrays[m][:, p] for m in MEASURES)
        both = np.isfinite(gap)
        if both.any():
            out.append(f"{name} against train ({int(both.sum())} runs): median relative gap {np.median(gap[both]):.3g}, "
                       f"relative sharpness {np.median(rel[both]):.3g}, absolute sharpness "
                       f"{np.nanmedian(ab[both]):.3g}")
        for m, label in (("relative_sharpness", "R_rel"), ("absolute_sharpness", "R_abs")):
            line = info["lines"][str(name)][f"{m} vs relative_gap, log-log"]
            out.append("  " + sharpness.describe_line(None if line is None else sharpness.Line(**line),
                                                      f"{label} against m"))
    return out


def sweep_curves(sweep: dict, n_classes: int) -> tuple[dict, dict, list]:
    """The accuracy curves of a loaded sweep (name -> (runs, logs)), their chance accuracy 1 / n_classes, and the
    (pair, test, train) pairs: the held-out set (if the sweep has held-out points) and every evaluation set's table
    against training."""
    traces = sweep["traces"]
    curves = {"train": traces["train_acc"]}
    if "heldout_acc" in traces and np.isfinite(traces["heldout_acc"]).any():
        curves["heldout"] = traces["heldout_acc"]
    for g, name in enumerate(sweep["group_names"]):
        curves[f"set {name}"] = traces["group_acc"][..., g]
    return curves, {k: 1.0 / n_classes for k in curves}, [(k, k, "train") for k in curves if k != "train"]


def add_fit_options(p) -> None:
    """The fitter's options (`--iterations`, `--min-r2`, `--tol`) on an argparse parser, for every script that fits."""
    p.add_argument("--iterations", type=int, default=DEFAULT_ITERATIONS,
                   help="Levenberg-Marquardt iterations per curve (default: %(default)s)")
    p.add_argument("--min-r2", type=float, default=DEFAULT_MIN_R2,
                   help="a fit with a lower R^2 is reported as not fitted (default: %(default)s)")
    p.add_argument("--tol", type=float, default=DEFAULT_TOL,
                   help="convergence: the largest cosine between the residual and a Jacobian column "
                        "(default: %(default)s)")


def settings_of(a) -> dict:
    return {"iterations": a.iterations, "min_r2": a.min_r2, "tol": a.tol, "chance": a.chance}


def run_fits(a, log=print) -> dict | None:
    """Fit, print and save the fits of the sweep `a.results_dir` for the options of experiments/fit_curves.py.
    Returns the summary (fits.json's contents), or None if fits with the same settings were already saved."""
    root = Path(a.results_dir)
    for name, value in (("--iterations", a.iterations), ("--workers", a.workers)):
        if value < 1:
            raise UserError(f"{name} must be a positive integer, got {value}.")
    if not (a.chance is None or 0 <= a.chance < 1):
        raise UserError(f"The chance accuracy must be in [0, 1), got {a.chance}.")
    if not 0 < a.tol < 1:
        raise UserError(f"The convergence tolerance must be in (0, 1), got {a.tol}.")
    sweep = load_sweep(root)
    outputs = [root / f for f in FILES]
    if all(p.is_file() for p in outputs) and not a.overwrite:
        saved = read_json(outputs[1]).get("settings")
        if saved == settings_of(a):
            log(f"{root} already has its fits ({', '.join(FILES)}) with these settings; --overwrite fits again.")
            return None
        raise UserError(f"{root} has fits with other settings ({saved}); pass --overwrite to replace them.")
    with guard(lambda: "nothing was saved: run the same command again"), locked(root):
        return _run_fits(a, root, sweep, outputs, log)


def _run_fits(a, root: Path, sweep: dict, outputs: list[Path], log) -> dict:
    from grokjax.run.specs import read_config

    cfg = read_config(sweep["config"], str(root / "config.json"))
    n_classes = cfg.problem.build().n_classes
    warning = diverged_warning(sweep, what="their fits are marked 'diverged in training'")
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    curves, chance, pairs = sweep_curves(sweep, n_classes)
    if a.chance is not None:
        chance = {k: a.chance for k in chance}
    t0 = time.perf_counter()
    arrays = fit_named(sweep["traces"]["epochs"], curves, chance, pairs, skip=sweep["diverged"],
                       iterations=a.iterations, min_r2=a.min_r2, tol=a.tol, workers=a.workers)
    seconds = time.perf_counter() - t0
    arrays["run"] = np.arange(len(sweep["diverged"]))
    info = {"kind": "erf_fits", "definitions": DEFINITIONS, "reasons": list(REASONS), "settings": settings_of(a),
            "unit": cfg.schedule.unit, **summary(arrays),
            "run": {"seconds_with_compile": seconds, "curves": int(arrays["reason"].size),
                    "device": str(jax.devices()[0])}, "environment": storage.environment()}
    write_together({outputs[0]: lambda path: storage.write_arrays(path, arrays),
                    outputs[1]: lambda path: storage.write_json(path, info)})
    log(f"fitted {arrays['reason'].size} curves ({len(arrays['run'])} runs x {len(arrays['curves'])}) of {root} in "
        f"{seconds:.1f} s with compilation")
    log("\n".join(summary_lines(arrays, info)))
    log(f"wrote {outputs[0]} and {outputs[1]}")
    return info



def write_collection(root: Path, name: str, arrays: dict, info: dict) -> list[Path]:
    """Write NAME.npz and NAME.json into `root` together (or neither); returns their paths."""
    paths = [Path(root) / f"{name}.npz", Path(root) / f"{name}.json"]
    write_together({paths[0]: lambda path: storage.write_arrays(path, arrays),
                    paths[1]: lambda path: storage.write_json(path, {**info, "environment": storage.environment()})})
    return paths
