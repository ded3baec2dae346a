"""The training-Jacobian experiment: J = dθ_T/dθ_0 of the sweep's own training for each training set and seed,
its spectrum at every requested T, saved whole (one directory, replaced atomically) and drawn from the arrays.

Seeds go through the runner (vmapped dense J, several seeds per call) where their dense Jacobians fit; else one
seed at a time: linearize, then column batches or the matrix-free top-k.
"""

import argparse
import dataclasses
import resource
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from tqdm import tqdm

from grokjax.analysis import jacobian as jac
from grokjax.cli import config_from_args
from grokjax.errors import UserError
from grokjax.figures.jacobian import CONFIG_KEY, draw_jacobian, is_jacobian_results
from grokjax.problems.group_tasks import GroupsProblem
from grokjax.run import runner, storage
from grokjax.run.outdir import check_replaceable, check_writable, guard, locked, replace_directory
from grokjax.run.specs import SweepConfig
from grokjax.train import Schedule, make_trainer, seed_keys

SETTINGS = {
    "iid": {"groups": ("S(4)",), "task": "iid", "fraction": 0.6},
    "intersection": {"groups": ("S(4)", "times(A(4),Z(2))"), "task": "intersection"},
}
DEFAULT_EPOCHS = (10, 30, 100, 200)  # CPU-sized: see the README (each T costs a dense SVD)
PUBLISHED_WEIGHT_DECAY = 2e-4  # the setting for the Jacobian; unlike the sweep's default, 2e-5


def settings_of(a, epochs) -> dict:
    """Name -> SweepConfig of every training set to run: the published ones, or one custom set if --groups is given.

    The schedule is recorded only (full batch; J is taken at `epochs`)."""
    schedule = Schedule(length=max(epochs[-1], 1), log_every=max(epochs[-1], 1))
    custom = argparse.Namespace(**{**vars(a), "groups": a.groups or ["S(4)"]})
    base = config_from_args(custom, schedule, seed=a.seed, n_seeds=a.n_seeds)
    if a.groups:
        return {"custom": base}
    return {name: dataclasses.replace(base, problem=GroupsProblem(**SETTINGS[name], data_seed=a.data_seed))
            for name in dict.fromkeys(a.settings)}


def one_seed(lz: jac.Linearized, batch: int | None, metrics, a, progress) -> tuple[dict, dict]:
    """Spectrum of J and metrics of θ_T at every requested epoch (arrays with a leading epoch axis), and timings,
    from one seed's linearization: J by column batches, or its top-k triplets matrix-free."""
    check_thetas(lz.thetas)
    t0 = time.perf_counter()
    if a.top_k:
        triplets = jax.block_until_ready(jac.top_singular(lz, a.top_k, jax.random.PRNGKey(0)))
        t1 = time.perf_counter()
        arrays = spectrum_arrays(triplets, ("singular_values", "cosines", "sigma_max"), lz.thetas, metrics, a)
        return arrays, {"jacobian_s": t1 - t0, "svd_s": time.perf_counter() - t1}
    j = jac.jacobian_columns(lz, batch, progress)
    arrays, svd_s = dense_spectrum(j, lz.thetas, metrics, a)
    return arrays, {"jacobian_s": time.perf_counter() - t0 - svd_s, "svd_s": svd_s}


def check_thetas(thetas) -> None:
    if not np.isfinite(thetas).all():
        raise UserError("Training diverged: the parameters are not finite at a requested epoch.")


def dense_spectrum(j, thetas, metrics, a) -> tuple[dict, float]:
    """Arrays of the full spectrum of every J_T (K, P, P) and metrics of θ_T; and the seconds of the SVDs."""
    t0 = time.perf_counter()
    triplets = jax.block_until_ready(jac.singular_triplets(j)) if np.isfinite(j).all() else None
    return spectrum_arrays(triplets, jac.Spectrum._fields, thetas, metrics, a), time.perf_counter() - t0


def spectrum_arrays(triplets, kept, thetas, metrics, a) -> dict:
    """The `kept` fields of the spectrum of `triplets` (U, σ, V) and the metrics of θ_T, as numpy arrays."""
    if triplets is None or not np.isfinite(triplets[1]).all():
        raise UserError("The Jacobian is not finite: training diverged along some direction, or a gradient entry is "
                        "exactly zero under Adam (its square root has no derivative at zero; weight decay avoids it).")
    spectrum = jac.analyse(*triplets, a.sigma_tol, a.cos_tol)
    return {**{k: np.asarray(getattr(spectrum, k)) for k in kept},
            **{k: np.asarray(v) for k, v in metrics(thetas)._asdict().items()}}


def seeds_per_batch(dyn, first, epochs, n_params: int, n_seeds: int, a) -> int:
    """Seeds whose dense J is computed at once by the vmapped `jacobian_batch` (jacfwd, all columns at once);
    0 to take the seeds one at a time (linearize, then column batches or top-k).

    The vmapped path is used when the dense J of at least one seed fits half the device's *total* memory
    (never what is free now: the width, and so the programs, depend only on the machine and the problem),
    without --top-k or --columns-per-batch, and on CPU only for at most CPU_COLUMNS_PER_BATCH parameters:
    there, pushing more columns at once is slower per column (see jac.CPU_COLUMNS_PER_BATCH).
    """
    if a.top_k or a.columns_per_batch:
        return 0
    if jax.devices()[0].platform == "cpu" and n_params > jac.CPU_COLUMNS_PER_BATCH:
        return 0
    return jac.seeds_that_fit(dyn, first, epochs, n_seeds)


def run_setting(name, cfg: SweepConfig, epochs, a, log) -> tuple[dict, dict, dict]:
    """Arrays (seed axis first, then epochs), task summary (with the parameter layout) and timings of a training set."""
    data = cfg.problem.build()
    trainer = make_trainer(data, cfg)
    dtype = jnp.float64 if a.float64 else jnp.float32
    hparams = jax.tree.map(lambda h: h.astype(dtype), cfg.hparams())
    dyn = jac.trainer_dynamics(trainer, hparams)
    keys, init32 = seed_keys(cfg.seed, np.arange(cfg.n_seeds)), jax.jit(lambda key: trainer.init(key).params)

    def init(key):  # the sweep's float32 initial parameters, cast: the same θ0 in either precision
        with jax.enable_x64(False):
            params = init32(key)
        return jax.tree.map(lambda x: jnp.asarray(x, dtype), params)

    first = init(keys[0])
    layout, unravel = jac.param_layout(first), ravel_pytree(first)[1]
    metrics = jax.jit(jax.vmap(lambda theta: trainer.metrics(unravel(theta))))  # of θ_T at every T
    n_params = sum(int(np.prod(leaf["shape"])) for leaf in layout)
    if a.top_k and a.top_k > n_params:
        raise UserError(f"--top-k {a.top_k} is more than the {n_params} parameters.")
    width = seeds_per_batch(dyn, first, epochs, n_params, cfg.n_seeds, a)
    log(f"{name}: {cfg.model.kind} on {', '.join(data.eval_names)}, {data.n_train} training pairs of {data.n_points}, "
        f"{n_params} parameters, T = {' '.join(map(str, epochs))}, {cfg.n_seeds} seed(s)" +
        (f", {width} at once (vmapped)" if width else ""))
    bar = tqdm(total=cfg.n_seeds * n_params, unit="col", disable=a.no_progress or bool(a.top_k),
               file=sys.stderr, dynamic_ncols=True)
    seeds, seconds, batch = [], {"linearize_s": 0.0, "jacobian_s": 0.0, "svd_s": 0.0}, a.columns_per_batch
    with bar:
        if width:  # every column of `width` seeds at once, padded to `width` seeds: one program
            batch = n_params
            stacked = jax.tree.map(lambda *x: jnp.stack(x), *[init(key) for key in keys])
            calls = runner.run_program((jac.jacobian_program, (dyn, epochs)), (stacked,), width, workers=1)
            compiled = next(calls)
            t0 = time.perf_counter()
            seconds["jacobian_s"] += compiled.seconds
            for _, (js, thetas) in calls:
                seconds["jacobian_s"] += time.perf_counter() - t0
                for j, th in zip(js, thetas):
                    check_thetas(th)
                    arrays, svd_s = dense_spectrum(j, th, metrics, a)
                    seeds.append(arrays)
                    seconds["svd_s"] += svd_s
                    bar.update(n_params)
                t0 = time.perf_counter()
        else:  # one seed at a time, a Python loop: linearize, then column batches (or top-k)
            for i, key in enumerate(keys):
                t0 = time.perf_counter()
                lz = jax.block_until_ready(jac.linearize(dyn, init(key), epochs))
                seconds["linearize_s"] += time.perf_counter() - t0
                if not (a.top_k or batch):
                    batch = jac.columns_per_batch(lz)

                def progress(n, done=i * n_params):
                    bar.update(done + n - bar.n)

                arrays, times = one_seed(lz, batch, metrics, a, progress)
                seeds.append(arrays)
                seconds.update({k: seconds[k] + v for k, v in times.items()})
    arrays = {k: np.stack([s[k] for s in seeds]) for k in seeds[0]}
    summary = {**data.summary, "n_params": n_params, "columns_per_batch": batch, "seeds_per_batch": width,
               "layout": layout}
    return {"epochs": np.asarray(epochs), "seed": np.arange(cfg.n_seeds), **arrays}, summary, seconds


def run_jacobian(a) -> None:
    """Run the experiment for the options `a` of experiments/training_jacobian.py (see its --help)."""
    t0 = time.perf_counter()
    epochs = jac.check_epochs(a.epochs)
    for name, value in (("--top-k", a.top_k), ("--columns-per-batch", a.columns_per_batch)):
        if value is not None and value < 1:
            raise UserError(f"{name} must be a positive integer, got {value}.")
    if not (a.sigma_tol > 0 and -1 <= a.cos_tol < 1):
        raise UserError("The bulk tolerances need --sigma-tol > 0 and --cos-tol in [-1, 1).")
    settings = settings_of(a, epochs)
    for cfg in settings.values():
        cfg.problem.build()  # every bad input is found before any training
    root = Path(a.out or time.strftime("results/jacobian-%Y%m%d-%H%M%S"))
    check_replaceable(root, a.overwrite, is_jacobian_results(root), "training-Jacobian")
    check_writable(root)
    kept = f"{root} is unchanged" if root.exists() else "nothing was written"
    with guard(lambda: f"{kept}: run the same command again"), locked(root):
        _compute_and_save(a, root, settings, epochs, t0)


def _compute_and_save(a, root: Path, settings: dict, epochs, t0: float) -> None:
    results, summaries, timings = {}, {}, {}
    for name, cfg in settings.items():
        start = time.perf_counter()
        with jax.enable_x64(a.float64):
            results[name], summaries[name], timings[name] = run_setting(name, cfg, epochs, a, print)
        timings[name]["total_s"] = time.perf_counter() - start
        print(f"{name}: {timings[name]['total_s']:.0f} s; largest singular value (seed 0) " +
              ", ".join(f"T={t}: {v:.3g}" for t, v in zip(epochs, results[name]["sigma_max"][0])))

    config = {CONFIG_KEY: {"epochs": list(epochs), "n_seeds": a.n_seeds, "seed": a.seed, "sigma_tol": a.sigma_tol,
                           "cos_tol": a.cos_tol, "top_k": a.top_k, "float64": a.float64,
                           "sweep": next(iter(settings.values())).to_dict(),
                           "settings": {n: c.problem.to_dict() for n, c in settings.items()}},
              "tasks": summaries, "environment": storage.environment()}
    run = {"device": str(jax.devices()[0]), "seconds": timings, "total_s": time.perf_counter() - t0,
           "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    write_results(root, config, results, run)
    print(f"results in {root}")
    for path in draw_jacobian(root):
        print(path)


def write_results(root: Path, config: dict, results: dict, run: dict) -> None:
    """The whole results directory at once, replacing an old one only once the new one is complete (call with
    `locked(root)` held)."""

    def fill(tmp: Path) -> None:
        storage.write_json(tmp / "config.json", config)
        for name, arrays in results.items():
            storage.write_arrays(tmp / f"{name}.npz", arrays)
        storage.write_json(tmp / "run.json", run)

    replace_directory(root, fill)
