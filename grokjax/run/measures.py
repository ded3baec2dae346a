"""The generalization measures of every run of a finished sweep (or of its kept checkpoints), from the saved
parameters: loading, computing through the runner, the printed summary, and all-or-nothing writes beside the
results (`measures.npz` and `measures.json`, or `measures_checkpoints.*`).

A run's init is not read from disk: it is redrawn from the run's init key (`run_inputs`). The PAC-Bayes noise of
run i uses the base key fold_in(PRNGKey(seed), i); at a checkpoint the checkpoint's epoch is folded in too
(`checkpoint_keys`), then the search's tag (`grokjax.analysis.measures`).
"""

import dataclasses
import sys
import time
from pathlib import Path

import jax
import numpy as np
from tqdm import tqdm

from grokjax.analysis.llc import checkpoint_keys
from grokjax.analysis.measures import DIAGNOSTICS, MEASURES, MeasuresConfig, measures_program
from grokjax.analysis.outcomes import category_names
from grokjax.errors import UserError
from grokjax.figures.common import seed_outcomes
from grokjax.run import runner, storage
from grokjax.run.states import finished_sweep
from grokjax.run.outdir import guard, locked, refuse_existing, write_together
from grokjax.run.results import diverged_warning
from grokjax.run.sweep import run_inputs
from grokjax.train import make_trainer, seed_keys


def compute_measures(sweep_cfg, params, runs, keys, cfg: MeasuresConfig, workers: int = 1,
                     on_call=None) -> tuple[dict, MeasuresConfig]:
    """Every measure (and `DIAGNOSTICS`) of the models `params` (leaves (models, ...)) of the sweep's `runs` (one
    run index per model) with noise keys `keys`, through the runner at `cfg.models_per_call` (0: its width
    policy), in `workers` pinned CPU processes (0: one per core; the numbers are the same bit for bit).
    Returns the numpy arrays and `cfg` with the width used."""
    inputs = (params, run_inputs(sweep_cfg, runs)[0], np.asarray(keys))
    if not cfg.models_per_call:
        width = runner.call_width((measures_program, (sweep_cfg, cfg)), jax.tree.map(lambda x: x[:1], inputs))
        cfg = dataclasses.replace(cfg, models_per_call=width)
    out, _ = runner.map_program((measures_program, (sweep_cfg, cfg)), inputs, cfg.models_per_call, workers, on_call,
                                what="model", option="--models-per-call")
    return out, cfg


def _saved_params(root: Path, params_dir: str, sweep_cfg, runs) -> dict:
    """The saved parameters of `runs` (run axis first, then checkpoints) in the model's PyTree."""
    template = jax.eval_shape(make_trainer(sweep_cfg.problem.build(), sweep_cfg).init, jax.random.PRNGKey(0)).params
    named = storage.load_params(root / params_dir, mmap=True)
    try:
        params = storage.from_named_leaves(template, named)
    except ValueError as e:
        raise UserError(f"{root / params_dir} does not hold this sweep's model parameters ({e}).") from None
    return jax.tree.map(lambda x: np.asarray(x[runs]), params)


def summary_lines(sweep: dict, runs: np.ndarray, values: dict) -> list[str]:
    """Printed table: the median of each measure (rows) over the runs of each outcome (columns); runs that
    diverged in training left out."""
    outcomes = seed_outcomes(sweep["seeds"]["grokked"][runs], sweep["group_names"], sweep["diverged"][runs])
    names = [n for n in category_names(sweep["group_names"]) if np.any(outcomes == n)]
    width = max(len(m) for m in MEASURES)
    lines = [f"{'median by outcome (runs)':<{width}}  " + "  ".join(f"{f'{n} ({np.sum(outcomes == n)})':>14}"
                                                                 for n in names)]
    for m in MEASURES:
        cells = [np.nanmedian(values[m][outcomes == n]) if np.isfinite(values[m][outcomes == n]).any() else np.nan
                 for n in names]
        lines.append(f"{m:<{width}}  " + "  ".join(f"{c:>14.4g}" for c in cells))
    diverged = int(np.sum(outcomes == "diverged"))
    if diverged:
        lines.append(f"({diverged} runs that diverged in training left out)")
    return lines


def run_measures(a) -> None:
    """Compute, print and save the measures for the options `a` of experiments/measures.py (see its --help)."""
    root = Path(a.results_dir)
    cfg = MeasuresConfig(a.search_depth, a.samples, a.displacement, a.tolerance, a.sigma_max, a.magnitude_eps,
                         a.models_per_call)
    if not 0 <= a.seed < 2**32:
        raise UserError(f"The seed must be an integer in [0, 2**32), got {a.seed}.")
    if a.first is not None and a.first < 1:
        raise UserError(f"--first must be a positive integer, got {a.first}.")
    sweep, sweep_cfg, params_dir = finished_sweep(root, a.checkpoints)
    name = "measures_checkpoints" if a.checkpoints else "measures"
    outputs = [root / f"{name}.npz", root / f"{name}.json"]
    refuse_existing(outputs, a.overwrite)
    with guard(lambda: "no measures were saved: run the same command again"), locked(root):
        _run_measures(a, root, cfg, sweep, sweep_cfg, params_dir, name, outputs)


def _run_measures(a, root, cfg, sweep, sweep_cfg, params_dir, name, outputs) -> None:
    n_runs = len(sweep["seeds"]["grokked"])
    runs = np.arange(min(a.first or n_runs, n_runs))
    warning = diverged_warning(sweep, runs, f"their measures are NaN ({name}.npz keeps a row for every run) and "
                                            f"they are left out of the summary")
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    params = _saved_params(root, params_dir, sweep_cfg, runs)
    if a.checkpoints:
        epochs = sweep["traces"]["checkpoint_epochs"]
        keys = checkpoint_keys(a.seed, runs, epochs)
        shape = keys.shape[:2]
        flat = lambda x: np.reshape(x, (-1, *np.shape(x)[2:]))
        params, keys, model_runs = jax.tree.map(flat, params), flat(keys), np.repeat(runs, len(epochs))
    else:
        keys, model_runs, shape = np.asarray(seed_keys(a.seed, runs)), runs, (len(runs),)
    total = len(model_runs)
    print(f"generalization measures of {total} models ({len(runs)} runs{' x checkpoints' if a.checkpoints else ''}) "
          f"of {root} on {jax.devices()[0].platform}: sigma by bisection, depth {cfg.search_depth}, "
          f"{cfg.samples} samples, accuracy displacement {cfg.displacement:g}")
    t0 = time.perf_counter()
    with tqdm(total=total, unit="model", disable=a.no_progress, file=sys.stderr, dynamic_ncols=True) as bar:
        out, cfg = compute_measures(sweep_cfg, params, model_runs, keys, cfg, a.workers, lambda done: bar.update(done - bar.n))
    seconds = time.perf_counter() - t0
    arrays = {"run": runs, **{k: out[k].reshape(shape) for k in (*MEASURES, *DIAGNOSTICS)}}
    if a.checkpoints:
        arrays["epochs"] = epochs
    info = {"kind": name, "measures": list(MEASURES),
            "settings": {**dataclasses.asdict(cfg), "seed": a.seed, "first": len(runs)},
            "adjustment": "as the reference: 0.5 (value - log m) for LOG_ measures, sqrt(value / m) for the others",
            "n_train": sweep_cfg.problem.build().n_train,
            "run": {"seconds_with_compile": seconds, "models_per_s": total / seconds, "device": str(jax.devices()[0])},
            "environment": storage.environment()}
    write_together({outputs[0]: lambda path: storage.write_arrays(path, arrays),
                    outputs[1]: lambda path: storage.write_json(path, info)})
    final = {k: v[:, -1] if a.checkpoints else v for k, v in arrays.items() if k in MEASURES}
    if a.checkpoints:
        print(f"at the last checkpoint, epoch {epochs[-1]}:")
    print("\n".join(summary_lines(sweep, runs, final)))
    print(f"{seconds:.1f} s with compilation, {total / seconds:,.1f} models/s; wrote {outputs[0]} and {outputs[1]}")
