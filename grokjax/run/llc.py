"""The LLC of every run of a finished sweep (or of its kept checkpoints), from the saved parameters: loading,
estimating through the runner, the printed summary, and all-or-nothing writes beside the results.

Chains of run i (row i of seeds.npz) use the key fold_in(fold_in(fold_in(PRNGKey(seed), i), 0x11C), chain);
at a checkpoint the checkpoint's epoch is folded in before the tag.
"""

import dataclasses
import sys
import time
from pathlib import Path

import jax
import numpy as np
from tqdm import tqdm

from grokjax.analysis.llc import (LLCConfig, calibrate, checkpoint_keys, estimate_llc, estimate_llc_checkpoints,
                                  sweep_loss, validate_grid, with_models_per_call)
from grokjax.analysis.outcomes import category_names
from grokjax.errors import UserError
from grokjax.figures.common import save_figure, seed_outcomes
from grokjax.figures.llc import llc_calibration
from grokjax.run import runner, storage
from grokjax.run.outdir import guard, locked, refuse_existing, write_together
from grokjax.run.results import diverged_warning
from grokjax.run.states import finished_sweep
from grokjax.train import seed_keys

EPS_GRID = (1e-4, 2e-4, 4e-4, 8e-4, 1.6e-3, 3.2e-3)
NBETA_GRID = (100.0, 300.0, 1000.0, 3000.0)


def _summary_lines(sweep: dict, runs: np.ndarray, llc: np.ndarray, label: str) -> list[str]:
    """Printed table: mean, median and spread of the (runs,) estimates by outcome; runs whose every chain diverged,
    and runs that diverged in training (no outcome), left out."""
    outcomes = seed_outcomes(sweep["seeds"]["grokked"][runs], sweep["group_names"], sweep["diverged"][runs])
    names = category_names(sweep["group_names"])
    width = max(len("outcome"), *(len(n) for n in names))
    lines = [f"{'outcome':<{width}}  {'runs':>6}  {label + ' mean':>12}  {'median':>9}  {'std':>9}"]
    for name in names:
        values = llc[outcomes == name]
        values = values[np.isfinite(values)]
        if len(values):
            lines.append(f"{name:<{width}}  {len(values):>6}  {values.mean():>12.4g}  {np.median(values):>9.4g}  "
                         f"{values.std():>9.4g}")
    diverged = int(np.sum(outcomes == "diverged"))
    if diverged:
        lines.append(f"({diverged} runs that diverged in training left out)")
    return lines


def _rhat_line(rhat: np.ndarray, chains: int, n_diverged: np.ndarray) -> str:
    """Diverged chains, and split-R-hat above 1.1 and undetermined (NaN: fewer than two finite chains) apart."""
    undetermined = int(np.sum(np.isnan(rhat)))
    return (f"diverged chains: {int(n_diverged.sum())} of {n_diverged.size * chains}; "
            f"split-R-hat above 1.1: {int(np.sum(rhat > 1.1))} of {rhat.size} estimates"
            + (f", undetermined (NaN, fewer than two finite chains): {undetermined}" if undetermined else ""))


def _calibration(a, loss, params, runs, cfg, label) -> tuple[dict, list[str]]:
    """The eps x nbeta grid on `runs` in one call: arrays to save and the printed grid (* where stable)."""
    cal = calibrate(loss, params, seed_keys(a.seed, runs), a.eps_grid, a.nbeta_grid, cfg)
    lines = [f"{label} mean over {len(runs)} runs", f"{'eps':>9}  " + "  ".join(f"nbeta={nb:<9g}" for nb in cal.nbeta)]
    for e, eps in enumerate(cal.eps):
        cells = [f"{np.nanmean(cal.llc[e, b]):>9.4g}{'*' if cal.stable[e, b] else ' '}" for b in range(len(cal.nbeta))]
        lines.append(f"{eps:>9.2g}  " + "  ".join(f"{c:<15}" for c in cells))
    lines.append(f"* stable: no divergence, R-hat <= {cal.rhat_max:g} (an undetermined, NaN R-hat is not stable), "
                 f"within {cal.tol:.0%} of a neighbouring eps")
    lines.append(_rhat_line(cal.rhat, cfg.chains, cal.n_diverged))
    lines += [f"nbeta {nb:g}: largest stable eps {e:g}" for nb, e in zip(cal.nbeta, cal.recommended_eps)]
    return {"run": runs, **cal._asdict()}, lines


def _estimates(a, sweep, sweep_cfg, loss, params, runs, cfg, label) -> tuple[dict, list[str]]:
    """The LLC of every run (or of every checkpoint of every run): arrays to save and a printed summary."""
    epochs = sweep["traces"]["checkpoint_epochs"] if a.checkpoints else None
    total = len(runs) * (len(epochs) if a.checkpoints else 1)
    workers = runner.worker_count(a.workers, -(-total // cfg.models_per_call))
    if workers > 1:
        print(f"{workers} worker processes, {cfg.models_per_call} models per call")
    recipe = (sweep_loss, (sweep_cfg, a.behavioral))  # rebuilt in each worker process
    with tqdm(total=total, unit="model", disable=a.no_progress, file=sys.stderr, dynamic_ncols=True) as bar:
        update = lambda done: bar.update(done - bar.n)
        if a.checkpoints:
            result = estimate_llc_checkpoints(recipe, params, checkpoint_keys(a.seed, runs, epochs), cfg,
                                              on_call=update, workers=workers)
        else:
            result = estimate_llc(recipe, params, seed_keys(a.seed, runs), cfg, on_call=update, workers=workers)
    arrays = {"run": runs, **result._asdict(), "trace_steps": cfg.trace_steps}
    lines = _summary_lines(sweep, runs, result.llc[:, -1] if a.checkpoints else result.llc, label)
    if a.checkpoints:
        arrays["epochs"] = epochs
        lines.insert(0, f"at the last checkpoint, epoch {epochs[-1]}:")
    lines.append(_rhat_line(result.rhat, cfg.chains, result.n_diverged))
    return arrays, lines


def run_llc(a) -> None:
    """Estimate, print and save the LLC for the options `a` of experiments/llc.py (see its --help)."""
    root = Path(a.results_dir)
    cfg = LLCConfig(eps=a.eps, nbeta=a.nbeta, gamma=a.gamma, steps=a.steps, chains=a.chains, burn_in=a.burn_in,
                    batch_size=a.batch_size, thin=a.thin, models_per_call=a.models_per_call)
    if not 0 <= a.seed < 2**32:
        raise UserError(f"The seed must be an integer in [0, 2**32), got {a.seed}.")
    if a.first is not None and a.first < 1:
        raise UserError(f"--first must be a positive integer, got {a.first}.")
    if a.calibrate:
        validate_grid(a.eps_grid, a.nbeta_grid, cfg)
    sweep, sweep_cfg, params_dir = finished_sweep(root, a.checkpoints)
    kind = "behavioral_llc" if a.behavioral else "llc"
    label = "behavioral LLC" if a.behavioral else "LLC"
    name = kind + ("_checkpoints" if a.checkpoints else "_calibration" if a.calibrate else "")
    outputs = [root / f"{name}.npz", root / f"{name}.json"]
    refuse_existing(outputs, a.overwrite)
    with guard(lambda: "no estimate was saved: run the same command again"), locked(root):
        _run_llc(a, root, cfg, sweep, sweep_cfg, params_dir, name, label, outputs)


def _run_llc(a, root, cfg, sweep, sweep_cfg, params_dir, name, label, outputs) -> None:
    loss = sweep_loss(sweep_cfg, a.behavioral)
    n_runs = len(sweep["seeds"]["grokked"])
    if a.calibrate:  # the first runs that did not diverge: a diverged run has no posterior to calibrate on
        runs = np.flatnonzero(~sweep["diverged"])[:a.first or 4]
        if not len(runs):
            raise UserError(f"Every run of {root} diverged during training: there is nothing to calibrate on.")
        warning = diverged_warning(sweep, np.arange(runs[-1] + 1),
                                   f"they are skipped, and the calibration uses runs {', '.join(map(str, runs))}")
    else:
        runs = np.arange(min(a.first or n_runs, n_runs))
        warning = diverged_warning(sweep, runs, "their estimates mean nothing and they are left out of the summary "
                                                "by outcome (llc.npz keeps a row for every run; seeds.npz's "
                                                "'diverged' marks them)")
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    params = jax.tree.map(lambda x: np.asarray(x[runs]), storage.load_params(root / params_dir, mmap=True))
    if not a.calibrate:
        cfg = with_models_per_call(loss, cfg, params, seed_keys(a.seed, runs[:1]))
    print(f"{label} of {len(runs)} runs of {root} ({loss.n_data} training points) on {jax.devices()[0].platform}: "
          f"{cfg.chains} chains x {cfg.steps} steps, eps {cfg.eps:g}, nbeta {cfg.nbeta:g}, gamma {cfg.gamma:g}, "
          f"burn-in {cfg.burn_in:g}, {'full batch' if not cfg.batch_size else f'batches of {cfg.batch_size}'}")

    t0 = time.perf_counter()
    if a.calibrate:
        arrays, lines = _calibration(a, loss, params, runs, cfg, label)
    else:
        arrays, lines = _estimates(a, sweep, sweep_cfg, loss, params, runs, cfg, label)
    seconds = time.perf_counter() - t0
    rate = arrays["llc"].size * cfg.chains * cfg.steps / seconds
    info = {"kind": name, "settings": {**dataclasses.asdict(cfg), "seed": a.seed, "behavioral": a.behavioral,
                                       "first": len(runs)},
            "run": {"seconds_with_compile": seconds, "model_chain_steps_per_s": rate, "device": str(jax.devices()[0])},
            "environment": storage.environment(),
            "rhat_undetermined": int(np.sum(np.isnan(arrays["rhat"])))}
    if a.calibrate:
        info["settings"].update(eps_grid=a.eps_grid, nbeta_grid=a.nbeta_grid, models_per_call=arrays["llc"].size)
    write_together({outputs[0]: lambda path: storage.write_arrays(path, arrays),
                    outputs[1]: lambda path: storage.write_json(path, info)})
    print("\n".join(lines))
    print(f"{seconds:.1f} s with compilation, {rate:,.0f} model-chain-steps/s; wrote {outputs[0]} and {outputs[1]}")
    if a.calibrate:
        figure = root / "figures" / f"{name}.png"
        figure.parent.mkdir(exist_ok=True)
        save_figure(llc_calibration(arrays, label), figure)
        print(f"drew {figure}")


