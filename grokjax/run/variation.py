"""The total variation of the function over training (`grokjax.analysis.variation`) for every run of a finished
sweep with kept checkpoints: reading the checkpoints call by call, computing through the runner at the sweep's
call width, the printed table by outcome, and both result files or neither beside the results.

variation.npz holds `run` (rows of seeds.npz), `epochs` (the checkpoint epochs), `in_window` (intervals,), the
per-interval `{measure}_{point set}` (runs, intervals) (the loss on table and test: (runs, intervals, groups)) and
their `_sum` and `_mean` over the window; variation.json the definitions, the window and the settings.
"""

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np
from tqdm import tqdm

from grokjax.analysis.outcomes import category_names
from grokjax.analysis.variation import (POINT_SETS, check_window, variation_program, window_intervals,
                                        window_totals)
from grokjax.errors import UserError
from grokjax.figures.common import seed_outcomes
from grokjax.run import runner, storage
from grokjax.run.states import finished_sweep
from grokjax.run.outdir import guard, locked, refuse_existing, write_together
from grokjax.run.results import diverged_warning
from grokjax.train import make_trainer

DEFINITIONS = {
    "l2": "mean over the points of ||f_{t+1}(x) - f_t(x)||_2, the Euclidean norm of the change of the logit vector",
    "kl": "mean over the points of KL(softmax f_t(x) || softmax f_{t+1}(x)), the earlier checkpoint the reference",
    "flip": "fraction of the points whose argmax changed",
    "loss": "|L_{t+1} - L_t|, L the mean cross-entropy on the points: on train against the training labels, on "
            "table and test one value per group (last axis, in the order of 'groups') against its labels",
    "train": "the training points", "table": "every point of the table", "test": "the table minus the training points",
    "window": "sum and mean over the intervals between consecutive checkpoints that lie wholly inside the window",
}


@dataclass
class CheckpointInputs(runner.LazyInputs):
    """The runner's inputs: the kept checkpoints of runs 0 .. n - 1 as a parameter PyTree (runs, checkpoints, ...),
    read from the memory-mapped files only for the rows of each call (those of every run would not fit memory)."""

    path: str  # the sweep's checkpoints/ directory
    template: dict  # the parameters' structure (leaves unused)
    n: int

    def __len__(self) -> int:
        return self.n

    def take(self, rows) -> tuple:
        saved = storage.load_params(Path(self.path), mmap=True)
        return (storage.from_named_leaves(self.template, {k: np.asarray(v[rows]) for k, v in saved.items()}),)


def _table(sweep: dict, arrays: dict) -> list[str]:
    """Median over the runs of each outcome of every measure's sum over the window, on train and on test (the loss
    per group); runs that diverged in training are left out."""
    runs, groups = arrays["run"], sweep["group_names"]
    outcomes = seed_outcomes(sweep["seeds"]["grokked"][runs], groups, sweep["diverged"][runs])
    columns = [(f"{m} {s}", arrays[f"{m}_{s}_sum"]) for s in ("train", "test") for m in ("l2", "kl", "flip")]
    columns += [("loss train", arrays["loss_train_sum"])]
    columns += [(f"loss test {g}", arrays["loss_test_sum"][:, i]) for i, g in enumerate(groups)]
    names = category_names(groups)
    width = max(len("outcome"), *(len(n) for n in names))
    lines = [f"{'outcome':<{width}}  {'runs':>6}  " + "  ".join(f"{c:>{max(10, len(c))}}" for c, _ in columns)]
    for name in names:
        chosen = outcomes == name
        if chosen.any():
            lines.append(f"{name:<{width}}  {int(chosen.sum()):>6}  " + "  ".join(
                f"{np.nanmedian(v[chosen]):>{max(10, len(c))}.4g}" for c, v in columns))
    diverged = int(np.sum(outcomes == "diverged"))
    if diverged:
        lines.append(f"({diverged} runs that diverged in training left out)")
    return lines


def run_variation(a) -> None:
    """Compute, print and save the total variation for the options `a` of experiments/variation.py (see its --help)."""
    root = Path(a.results_dir)
    window = check_window(a.window)
    for name, value in (("--first", a.first), ("--runs-per-call", a.runs_per_call)):
        if value is not None and value < 1:
            raise UserError(f"{name} must be a positive integer, got {value}.")
    sweep, cfg, params_dir = finished_sweep(root, checkpoints=True)
    epochs = sweep["traces"]["checkpoint_epochs"]
    inside = window_intervals(epochs, cfg.schedule.length, window)
    outputs = [root / "variation.npz", root / "variation.json"]
    refuse_existing(outputs, a.overwrite)
    with guard(lambda: "nothing was saved: run the same command again"), locked(root):
        _run_variation(a, root, sweep, cfg, root / params_dir, epochs, inside, window, outputs)


def _run_variation(a, root, sweep, cfg, params_dir, epochs, inside, window, outputs) -> None:
    n_runs = len(sweep["seeds"]["grokked"])
    runs = np.arange(min(a.first or n_runs, n_runs))
    warning = diverged_warning(sweep, runs, "their values are NaN and they are left out of the table by outcome "
                                            "(variation.npz keeps a row for every run)")
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    data = cfg.problem.build()
    template = jax.tree.map(lambda _: 0, jax.eval_shape(make_trainer(data, cfg).init, jax.random.PRNGKey(0)).params)
    inputs = CheckpointInputs(str(params_dir), template, len(runs))
    program = (variation_program, (cfg,))
    width = a.runs_per_call or cfg.seeds_per_call or runner.call_width(program, inputs)
    workers = runner.worker_count(a.workers, -(-len(runs) // (width * len(jax.local_devices()))))
    counts = (data.n_train, data.n_points, data.n_points - data.n_train)
    print(f"total variation of {len(runs)} runs of {root} over {len(epochs)} checkpoints (epochs {epochs[0]} to "
          f"{epochs[-1]}), window {window[0]:.4g}-{window[1]:.4g} ({int(inside.sum())} of {len(inside)} intervals); "
          + ", ".join(f"{n} {s} points" for s, n in zip(POINT_SETS, counts))
          + f"; {width} runs per call on {jax.devices()[0].platform}" + (f", {workers} workers" if workers > 1 else ""))

    t0 = time.perf_counter()
    with tqdm(total=len(runs), unit="run", disable=a.no_progress, file=sys.stderr, dynamic_ncols=True) as bar:
        per_interval, _ = runner.map_program(program, inputs, width, workers, lambda done: bar.update(done - bar.n),
                                             what="run", option="--runs-per-call")
    seconds = time.perf_counter() - t0
    arrays = {"run": runs, "epochs": epochs, "in_window": inside, **per_interval, **window_totals(per_interval, inside)}
    info = {"kind": "variation", "definitions": DEFINITIONS, "groups": sweep["group_names"],
            "point_counts": dict(zip(POINT_SETS, counts)),
            "settings": {"window": list(window), "window_epochs": [int(epochs[:-1][inside][0]),
                                                                   int(epochs[1:][inside][-1])],
                         "first": len(runs), "runs_per_call": width},
            "run": {"seconds_with_compile": seconds, "device": str(jax.devices()[0]), "workers": workers},
            "environment": storage.environment()}
    write_together({outputs[0]: lambda path: storage.write_arrays(path, arrays),
                    outputs[1]: lambda path: storage.write_json(path, info)})
    print(f"median over runs of the sum over the window (epochs {info['settings']['window_epochs'][0]} to "
          f"{info['settings']['window_epochs'][1]}):")
    print("\n".join(_table(sweep, arrays)))
    print(f"{seconds:.1f} s with compilation; wrote {outputs[0]} and {outputs[1]}")
