"""The linear teacher-student model over seeds and lambda (`grokjax.analysis.linear_teacher`): closed-form and
simulated curves in one program through the runner, their error-function fits, and the gap-sharpness collections,
all saved together in one directory.

OUT/linear_teacher.npz holds per run (lambda varying slowest, then seed) `lambda` (d_in / N, as realised),
`n_train`, `seed`; the log `steps` and `time` (lr x steps); `closed_*` and `simulated_*` train/test loss and
accuracy (runs, logs) and `eigen_train_loss`, `eigen_test_loss` (the eigenvalue formulas; test: the population).
linear_teacher.json: the task, the grid, timings and how far the simulated curves are from the closed form.
fits.npz and fits.json (`grokjax.run.fits`): the curves closed/train, closed/test, simulated/train, simulated/test
with chance 0 and the pairs "closed" and "simulated". sharpness_closed.npz and sharpness_simulated.npz (and .json):
the collections the figures draw. Everything is written together, or nothing.
"""

import sys
import time
from pathlib import Path

import jax
import numpy as np
from tqdm import tqdm

from grokjax.analysis import sharpness
from grokjax.analysis.linear_teacher import LinearTeacher, teacher_program
from grokjax.errors import UserError
from grokjax.run import fits, runner, storage
from grokjax.run.outdir import guard, locked, refuse_existing, write_together
from grokjax.train import seed_keys

PAPER_LAMBDAS = (1.003, 1.01, 1.02, 1.03, 1.05, 1.075, 1.1)
"""The range of Miller, Gleeson et al. (lambda from 1.003 to 1.1), in steps that d_in = 300 resolves."""
RATIOS = ("d_over_n", "n_over_d")
METRICS = ("train_loss", "test_loss", "train_acc", "test_acc")
FILES = ("linear_teacher.npz", "linear_teacher.json", "fits.npz", "fits.json", "sharpness_closed.npz",
         "sharpness_closed.json", "sharpness_simulated.npz", "sharpness_simulated.json")


def grid(task: LinearTeacher, values, ratio: str) -> tuple[np.ndarray, np.ndarray]:
    """(lambda = d_in / N as realised, N) for each value: lambda itself ("d_over_n") or N / d_in ("n_over_d")."""
    if ratio not in RATIOS:
        raise UserError(f"Unknown ratio {ratio!r}; expected one of {', '.join(RATIOS)}.")
    values = np.asarray(values, np.float64)
    if not len(values) or not np.all(np.isfinite(values) & (values > 0)):
        raise UserError("The lambda values must be positive numbers.")
    n = np.array([max(1, int(round(task.d_in * v if ratio == "n_over_d" else task.d_in / v))) for v in values])
    if len(set(n)) != len(n):
        raise UserError(f"Two lambda values give the same number of training examples at d_in = {task.d_in} "
                        f"({', '.join(map(str, n))}): raise --d-in or space the values further apart.")
    return task.d_in / n, n


def run_inputs(seed: int, n_seeds: int, n_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keys and training sizes of every run, lambda varying slowest: run r is seed r % n_seeds with key
    fold_in(PRNGKey(seed), r % n_seeds) (so every lambda of a seed shares its teacher and nested training sets)
    at lambda r // n_seeds."""
    runs = np.arange(len(n_train) * n_seeds)
    return np.asarray(seed_keys(seed, runs % n_seeds)), n_train[runs // n_seeds].astype(np.int32)


def agreement(arrays: dict) -> dict:
    """How far the simulated curves are from the closed form: the largest difference of accuracy (train, test),
    and of the training loss relative to the closed form where that is above 1e-6 (float32 noise below)."""
    out = {f"max_abs_diff_{k}": float(np.max(np.abs(arrays[f"simulated_{k}"] - arrays[f"closed_{k}"])))
           for k in ("train_acc", "test_acc")}
    closed, sim = arrays["closed_train_loss"], arrays["simulated_train_loss"]
    above = closed > 1e-6
    rel = np.abs(sim - closed)[above] / closed[above]
    out["train_loss_rel_diff_max"] = float(rel.max()) if rel.size else None
    out["train_loss_rel_diff_median"] = float(np.median(rel)) if rel.size else None
    late = above & (arrays["time"][None, :] >= 10 * arrays["time"][1])
    rel_late = np.abs(sim - closed)[late] / closed[late]
    out["train_loss_rel_diff_max_after_10_steps"] = float(rel_late.max()) if rel_late.size else None
    return out


def run_linear_teacher(a, log=print) -> dict:
    """Compute, fit, save and print the linear teacher for the options `a` of experiments/linear_teacher.py."""
    task = LinearTeacher(d_in=a.d_in, d_out=a.d_out, n_test=a.n_test, noise=a.noise, init_scale=a.init_scale,
                         epsilon=a.epsilon, lr=a.lr, steps=a.steps, n_logs=a.n_logs)
    if a.seeds < 1:
        raise UserError(f"The number of seeds must be a positive integer, got {a.seeds}.")
    if a.workers < 0:
        raise UserError(f"The number of workers must be a non-negative integer, got {a.workers}.")
    lam, n_train = grid(task, a.lambdas, a.ratio)
    task.check_stable(lam)
    out = Path(a.out)
    outputs = [out / f for f in FILES]
    refuse_existing(outputs, a.overwrite)
    if a.runs_per_call is not None and a.runs_per_call < 1:
        raise UserError(f"--runs-per-call must be a positive integer, got {a.runs_per_call}.")
    with guard(lambda: "nothing was saved: run the same command again"), locked(out):
        created = not out.exists()
        out.mkdir(exist_ok=True)
        try:
            return _run(a, task, lam, n_train, out, outputs, log)
        finally:
            if created and not any(out.iterdir()):
                out.rmdir()  # nothing was written: leave no empty directory behind


def _run(a, task: LinearTeacher, lam, n_train, out: Path, outputs: list[Path], log) -> dict:
    keys, sizes = run_inputs(a.seed, a.seeds, n_train)
    program = (teacher_program, (task, int(n_train.max())))
    width = a.runs_per_call or runner.call_width(program, (keys, sizes))
    log(f"linear teacher: d_in {task.d_in}, d_out {task.d_out}, lambda = d_in / N in {', '.join(f'{x:.4g}' for x in lam)}"
        f" (N = {', '.join(map(str, n_train))}), {a.seeds} seeds, {task.steps} steps of lr {task.lr}, "
        f"epsilon {task.epsilon}; {len(keys)} runs, {width} per call")
    t0 = time.perf_counter()
    with tqdm(total=len(keys), unit="run", disable=a.no_progress, file=sys.stderr, dynamic_ncols=True) as bar:
        result, _ = runner.map_program(program, (keys, sizes), width, a.workers,
                                       lambda done: bar.update(done - bar.n), what="run", option="--runs-per-call")
    seconds = time.perf_counter() - t0
    steps = task.log_steps()
    runs = np.arange(len(keys))
    arrays = {"lambda": lam[runs // a.seeds], "n_train": sizes, "seed": runs % a.seeds, "steps": steps,
              "time": steps * task.lr,
              **{f"closed_{k}": np.asarray(v) for k, v in zip(METRICS, result["closed"])},
              **{f"simulated_{k}": np.asarray(v) for k, v in zip(METRICS, result["simulated"])},
              "eigen_train_loss": np.asarray(result["eigen"][0]), "eigen_test_loss": np.asarray(result["eigen"][1])}
    curves = {f"{view}/{side}": arrays[f"{view}_{side}_acc"] for view in ("closed", "simulated")
              for side in ("train", "test")}
    t1 = time.perf_counter()
    fitted = fits.fit_named(arrays["time"], curves, {k: 0.0 for k in curves},
                            [(view, f"{view}/test", f"{view}/train") for view in ("closed", "simulated")],
                            iterations=a.iterations, min_r2=a.min_r2, tol=a.tol)
    fitted["run"] = runs
    fit_seconds = time.perf_counter() - t1
    fit_info = {"kind": "erf_fits", "definitions": sharpness.DEFINITIONS, "reasons": list(sharpness.REASONS),
                "settings": {"iterations": a.iterations, "min_r2": a.min_r2, "tol": a.tol, "chance": 0.0},
                "unit": "time (lr x steps)", **fits.summary(fitted),
                "run": {"seconds_with_compile": fit_seconds, "curves": int(fitted["reason"].size)}}
    info = {"kind": "linear_teacher", "task": task.to_dict(), "ratio": a.ratio, "values": list(map(float, a.lambdas)),
            "lambda": list(map(float, lam)), "n_train": list(map(int, n_train)), "seeds": a.seeds, "seed": a.seed,
            "agreement": agreement(arrays),
            "run": {"seconds_with_compile": seconds, "runs_per_call": width, "device": str(jax.devices()[0])},
            "environment": storage.environment()}
    what = (f"linear teacher (d_in {task.d_in}, d_out {task.d_out}, epsilon {task.epsilon}, lr {task.lr}), {a.seeds} "
            f"seeds per lambda")
    writers = {outputs[0]: lambda p: storage.write_arrays(p, arrays), outputs[1]: lambda p: storage.write_json(p, info),
               outputs[2]: lambda p: storage.write_arrays(p, fitted), outputs[3]: lambda p: storage.write_json(p, fit_info)}
    infos = {}
    for k, view in enumerate(("closed", "simulated")):
        coll = sharpness.collection(sharpness.pair_table(fitted, k), "lambda", arrays["lambda"], arrays["time"],
                                    arrays[f"{view}_train_acc"], arrays[f"{view}_test_acc"], run=runs)
        infos[view] = sharpness.collection_info(coll, view, f"{what}, {view}", "time (lr x steps)")
        infos[view]["environment"] = info["environment"]
        writers[outputs[4 + 2 * k]] = lambda p, c=coll: storage.write_arrays(p, c)
        writers[outputs[5 + 2 * k]] = lambda p, i=infos[view]: storage.write_json(p, i)
    write_together(writers)
    log(f"{len(keys)} runs in {seconds:.1f} s with compilation; {fitted['reason'].size} curves fitted in "
        f"{fit_seconds:.1f} s")
    log("simulated against closed form: " + ", ".join(f"{k} {v:.3g}" for k, v in info["agreement"].items()
                                                        if v is not None))
    for view in ("closed", "simulated"):
        log("\n".join(sharpness.collection_lines(infos[view])))
    log(f"wrote {', '.join(p.name for p in outputs)} in {out}")
    return info
