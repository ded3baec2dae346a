"""Training Jacobians J = dθ_T/dθ_0 of MLP2 and their spectra against the number of epochs T.

Defaults are the published setting: D = H = 32 with unembedding bias, Adam (lr
1e-2, betas 0.9/0.98) with L2 weight decay 2e-4 on weights (the Jacobian's
published setting; the sweep's default is 2e-5), full batch, on two
training sets: a 60% iid sample of S(4)'s table (`iid`) and the S(4) vs
A(4) x Z(2) intersection (`intersection`). For every seed and every T, the SVD of
J gives the singular values, the cosines between matching singular vectors,
the bulk, the largest singular value and log |det J|; they are saved against T
with the metrics of θ_T, and the figures are drawn from the saved arrays.

    python experiments/training_jacobian.py                          # both settings, T = 10 30 100 200
    python experiments/training_jacobian.py --settings iid --epochs 100 1000 3000
    python experiments/training_jacobian.py --groups 'S(5)' 'times(A(5),Z(2))' \\
        --embed-dim 128 --hidden-dim 128 --top-k 50                   # too large for a dense J
"""

import argparse
import dataclasses
import os
import resource
import shutil
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from tqdm import tqdm

from grokjax import jacobian as jac
from grokjax import storage
from grokjax.cli import run_cli
from grokjax.errors import UserError
from grokjax.jacobian_figures import CONFIG_KEY, draw_jacobian, is_jacobian_results
from grokjax.sweep import SweepConfig, build_sweep_task
from grokjax.tasks import TASK_KINDS
from grokjax.train import OPTIMIZERS, PRECISIONS, TrainConfig, make_trainer, seed_keys

SETTINGS = {
    "iid": {"groups": ("S(4)",), "task": "iid", "fraction": 0.6},
    "intersection": {"groups": ("S(4)", "times(A(4),Z(2))"), "task": "intersection"},
}
DEFAULT_EPOCHS = (10, 30, 100, 200)  # CPU-sized: see the README (each T costs a dense SVD)
PUBLISHED_WEIGHT_DECAY = 2e-4  # the setting for the Jacobian; unlike the sweep's default, 2e-5
TASK_FIELDS = ("groups", "task", "fraction", "group_fractions", "iid_group", "data_seed")


def parse_args(argv=None):
    t = TrainConfig()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("training sets")
    g.add_argument("--settings", nargs="+", choices=tuple(SETTINGS), default=list(SETTINGS),
                   help="published training sets to run (default: %(default)s)")
    g.add_argument("--groups", nargs="+", default=None, metavar="SPEC",
                   help="run one custom training set on these groups instead of --settings")
    g.add_argument("--task", choices=TASK_KINDS, default="intersection", help="custom set: kind (default: %(default)s)")
    g.add_argument("--fraction", type=float, default=1.0, help="custom set: fraction (default: %(default)s)")
    g.add_argument("--group-fractions", type=float, nargs="+", default=[], metavar="F",
                   help="custom set: intersection_plus fractions, one per group")
    g.add_argument("--iid-group", type=int, default=0, help="custom set: iid group index (default: %(default)s)")
    g.add_argument("--data-seed", type=int, default=0, help="seed of the training-set sampling (default: %(default)s)")
    g = p.add_argument_group("model and optimiser")
    g.add_argument("--embed-dim", type=int, default=t.embed_dim, help="D (default: %(default)s)")
    g.add_argument("--hidden-dim", type=int, default=t.hidden_dim, help="H (default: %(default)s)")
    g.add_argument("--no-unembed-bias", action="store_true", help="drop the unembedding bias b_u")
    g.add_argument("--optimizer", choices=OPTIMIZERS, default=t.optimizer, help="(default: %(default)s)")
    g.add_argument("--lr", type=float, default=t.lr, help="learning rate (default: %(default)s)")
    g.add_argument("--beta1", type=float, default=t.beta1, help="Adam beta1 (default: %(default)s)")
    g.add_argument("--beta2", type=float, default=t.beta2, help="Adam beta2 (default: %(default)s)")
    g.add_argument("--eps", type=float, default=t.eps, help="Adam epsilon (default: %(default)s)")
    g.add_argument("--weight-decay", type=float, default=PUBLISHED_WEIGHT_DECAY,
                   help="L2 on weights for adam/sgd, decoupled for adamw (default: %(default)s, the Jacobian's "
                        "published setting; the sweep's default is 2e-5)")
    g.add_argument("--momentum", type=float, default=t.momentum, help="SGD momentum (default: %(default)s)")
    g.add_argument("--matmul-precision", choices=PRECISIONS, default=t.matmul_precision, help="(default: %(default)s)")
    g = p.add_argument_group("Jacobian")
    g.add_argument("--epochs", type=int, nargs="+", default=list(DEFAULT_EPOCHS), metavar="T",
                   help="epochs T at which to take J, increasing; one pass computes all (default: %(default)s)")
    g.add_argument("--n-seeds", type=int, default=1, help="init seeds per training set (default: %(default)s)")
    g.add_argument("--seed", type=int, default=0,
                   help="base init seed; seed i uses fold_in(seed, i) (default: %(default)s)")
    g.add_argument("--sigma-tol", type=float, default=jac.SIGMA_TOL,
                   help="bulk: |σ - 1| below this (default: %(default)s)")
    g.add_argument("--cos-tol", type=float, default=jac.COS_TOL,
                   help="bulk: cosine of left and right singular vectors above this (default: %(default)s)")
    g.add_argument("--top-k", type=int, default=None, metavar="K",
                   help="only the top K singular triplets, matrix-free (no bulk or log-det): for models too large "
                        "for a dense J")
    g.add_argument("--float64", action="store_true",
                   help="train and differentiate in float64 (slower): float32 resolves singular values only down to "
                        "about 1e-6 of the largest, which limits the log-det")
    g.add_argument("--columns-per-batch", type=int, default=None,
                   help="tangent columns pushed at once, one seed at a time (default: what fits half the device's "
                        "total memory, at most 64 on CPU; or every column of several seeds vmapped where their "
                        "dense J fits, see the README)")
    g = p.add_argument_group("output")
    g.add_argument("--out", default=None, help="results directory (default: results/jacobian-YYYYmmdd-HHMMSS)")
    g.add_argument("--overwrite", action="store_true", help="replace an existing results directory")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def settings_of(a, train: TrainConfig) -> dict:
    """Name -> SweepConfig of every training set to run: the published ones, or one custom set if --groups is given."""
    shared = {"data_seed": a.data_seed, "seed": a.seed, "n_seeds": a.n_seeds, "train": train}
    if a.groups:
        custom = {"groups": tuple(a.groups), "task": a.task, "fraction": a.fraction,
                  "group_fractions": tuple(a.group_fractions), "iid_group": a.iid_group}
        return {"custom": SweepConfig(**custom, **shared)}
    return {name: SweepConfig(**SETTINGS[name], **shared) for name in dict.fromkeys(a.settings)}


def check_output(root: Path, overwrite: bool) -> None:
    """Refuse an existing directory unless --overwrite (and then only our own results), or an unwritable place."""
    if root.exists() and not overwrite:
        raise UserError(f"The output directory {root} already exists; pass --overwrite to replace it.")
    if root.exists() and not is_jacobian_results(root):
        raise UserError(f"Refusing to overwrite {root}: it is not a training-Jacobian results directory.")
    ancestor = root.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK):
        raise UserError(f"Cannot write the results directory {root}: {ancestor} is not a writable directory.")


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
    task = build_sweep_task(cfg)
    trainer = make_trainer(task, cfg.train)
    dtype = jnp.float64 if a.float64 else jnp.float32
    hparams = jax.tree.map(lambda h: h.astype(dtype), cfg.train.hparams())
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
    log(f"{name}: groups {', '.join(g.name for g in task.groups)}, {task.n_train} training pairs of {task.n ** 2}, "
        f"{n_params} parameters, T = {' '.join(map(str, epochs))}, {cfg.n_seeds} seed(s)" +
        (f", {width} at once (vmapped)" if width else ""))
    bar = tqdm(total=cfg.n_seeds * n_params, unit="col", disable=a.no_progress or bool(a.top_k),
               file=sys.stderr, dynamic_ncols=True)
    seeds, seconds, batch = [], {"linearize_s": 0.0, "jacobian_s": 0.0, "svd_s": 0.0}, a.columns_per_batch
    with bar:
        if width:  # every column of `width` seeds at once, padded to `width` seeds: one program
            batch = n_params
            stacked = jax.tree.map(lambda *x: jnp.stack(x), *[init(key) for key in keys])
            for params0 in jac.seed_batches(stacked, width):
                t0 = time.perf_counter()
                js, thetas = jax.block_until_ready(jac.jacobian_batch(dyn, params0, epochs))
                seconds["jacobian_s"] += time.perf_counter() - t0
                for j, th in list(zip(js, thetas))[: cfg.n_seeds - len(seeds)]:
                    check_thetas(th)
                    arrays, svd_s = dense_spectrum(j, th, metrics, a)
                    seeds.append(arrays)
                    seconds["svd_s"] += svd_s
                    bar.update(n_params)
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
    summary = {"n": task.n, "n_train": task.n_train, "n_params": n_params, "columns_per_batch": batch,
               "seeds_per_batch": width, "group_names": [g.name for g in task.groups], "layout": layout}
    return {"epochs": np.asarray(epochs), "seed": np.arange(cfg.n_seeds), **arrays}, summary, seconds


def main(argv=None):
    a = parse_args(argv)
    t0 = time.perf_counter()
    epochs = jac.check_epochs(a.epochs)
    for name, value in (("--top-k", a.top_k), ("--columns-per-batch", a.columns_per_batch)):
        if value is not None and value < 1:
            raise UserError(f"{name} must be a positive integer, got {value}.")
    if not (a.sigma_tol > 0 and -1 <= a.cos_tol < 1):
        raise UserError("The bulk tolerances need --sigma-tol > 0 and --cos-tol in [-1, 1).")
    train = TrainConfig(
        embed_dim=a.embed_dim, hidden_dim=a.hidden_dim, unembed_bias=not a.no_unembed_bias, optimizer=a.optimizer,
        lr=a.lr, beta1=a.beta1, beta2=a.beta2, eps=a.eps, weight_decay=a.weight_decay, momentum=a.momentum,
        epochs=max(epochs[-1], 1), log_every=max(epochs[-1], 1),  # recorded only: J is taken at `epochs`
        matmul_precision=a.matmul_precision)
    settings = settings_of(a, train)
    for cfg in settings.values():
        build_sweep_task(cfg)  # every bad input is found before any training
    root = Path(a.out or time.strftime("results/jacobian-%Y%m%d-%H%M%S"))
    check_output(root, a.overwrite)

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
                           "train": dataclasses.asdict(train),
                           "settings": {n: {k: c.to_dict()[k] for k in TASK_FIELDS} for n, c in settings.items()}},
              "tasks": summaries, "environment": storage.environment()}
    run = {"device": str(jax.devices()[0]), "seconds": timings, "total_s": time.perf_counter() - t0,
           "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    write_results(root, config, results, run)
    print(f"results in {root}")
    for path in draw_jacobian(root):
        print(path)


def write_results(root: Path, config: dict, results: dict, run: dict) -> None:
    """Write everything into a temporary sibling directory and rename it into place: no partial results.

    With --overwrite the old directory is first renamed aside (`.NAME.old<pid>`), the new one renamed into
    place, and only then the old one deleted: an interruption leaves the old or the new results, never none.
    """
    tmp, old = root.with_name(f".{root.name}.tmp{os.getpid()}"), root.with_name(f".{root.name}.old{os.getpid()}")
    try:
        tmp.mkdir(parents=True)
        storage.write_json(tmp / "config.json", config)
        for name, arrays in results.items():
            storage.write_arrays(tmp / f"{name}.npz", arrays)
        storage.write_json(tmp / "run.json", run)
        if root.exists():  # move the old results aside, put the new ones in place, only then delete the old
            os.replace(root, old)
        os.replace(tmp, root)
    except OSError as e:
        if old.exists() and not root.exists():
            os.replace(old, root)  # the new results could not be put in place: keep the old ones
        raise UserError(f"Cannot write the results to {root}: {e.strerror or e}.") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)


if __name__ == "__main__":
    run_cli(main)
