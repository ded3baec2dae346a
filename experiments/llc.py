"""Estimate the local learning coefficient (LLC) of every seed of a finished sweep, from its saved parameters.

    python experiments/llc.py RESULTS_DIR                 # llc.npz and llc.json beside the results
    python experiments/llc.py RESULTS_DIR --behavioral    # behavioral_llc.npz and .json
    python experiments/llc.py RESULTS_DIR --checkpoints   # at every saved checkpoint: llc_checkpoints.npz and .json
    python experiments/llc.py RESULTS_DIR --calibrate     # eps x nbeta grid on 4 runs: llc_calibration.npz, .json, .png

SGLD defaults are the published ones (eps 8e-4, nbeta 1000, gamma 1, 3000 full-batch steps, 60% burn-in, 4 chains).
Chains of run i (row i of seeds.npz) use the key fold_in(fold_in(fold_in(PRNGKey(--seed), i), 0x11C), chain) (the tag
0x11C keeps them apart from the sweep's init keys); at a checkpoint the checkpoint's epoch is folded in before the
tag. Then `python experiments/figures.py RESULTS_DIR` also draws the LLC figures.
"""

import argparse
import dataclasses
import os
import sys
import time
from functools import partial
from pathlib import Path

import jax
import numpy as np
from tqdm import tqdm

from grokjax import storage
from grokjax.cli import run_cli
from grokjax.errors import UserError
from grokjax.figures import llc_calibration, load_sweep, save_figure, seed_outcomes
from grokjax.execute import worker_count
from grokjax.llc import (LLCConfig, calibrate, checkpoint_keys, estimate_llc, estimate_llc_checkpoints,
                         estimate_llc_in_workers, models_per_call, sweep_loss, validate_grid)
from grokjax.outcomes import category_names
from grokjax.sweep import SweepConfig, build_sweep_task
from grokjax.train import seed_keys

EPS_GRID = (1e-4, 2e-4, 4e-4, 8e-4, 1.6e-3, 3.2e-3)
NBETA_GRID = (100.0, 300.0, 1000.0, 3000.0)


def parse_args(argv=None):
    d = LLCConfig()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results_dir", help="directory of a finished sweep (experiments/sweep_intersection.py)")
    g = p.add_argument_group("SGLD")
    g.add_argument("--eps", type=float, default=d.eps, help="step size (default: %(default)s)")
    g.add_argument("--nbeta", type=float, default=d.nbeta, help="n times inverse temperature (default: %(default)s)")
    g.add_argument("--gamma", type=float, default=d.gamma, help="localization strength (default: %(default)s)")
    g.add_argument("--steps", type=int, default=d.steps, help="steps per chain (default: %(default)s)")
    g.add_argument("--chains", type=int, default=d.chains, help="chains per model (default: %(default)s)")
    g.add_argument("--burn-in", type=float, default=d.burn_in, help="fraction of steps left out (default: %(default)s)")
    g.add_argument("--batch-size", type=int, default=d.batch_size, help="minibatch size, 0 for full batch (default: 0)")
    g.add_argument("--thin", type=int, default=d.thin, help="keep the loss every THIN steps (default: %(default)s)")
    g.add_argument("--models-per-call", type=int, default=d.models_per_call,
                   help="models in one compiled call; fixes the numerics, recorded with the results "
                        "(default: 64 model-chains on CPU, what fits a quarter of an accelerator's memory)")
    g.add_argument("--seed", type=int, default=0, help="base key of the chains (default: %(default)s)")
    g.add_argument("--workers", type=int, default=0,
                   help="on a one-device CPU, worker processes each pinned to a core and running whole calls; "
                        "the numbers do not change (default: one per core; 1: in this process)")
    g = p.add_argument_group("what to estimate")
    g.add_argument("--behavioral", action="store_true", help="behavioral LLC: KL to the model's own outputs at w*")
    mode = g.add_mutually_exclusive_group()
    mode.add_argument("--checkpoints", action="store_true",
                      help="at every checkpoint saved by the sweep (--keep-every)")
    mode.add_argument("--calibrate", action="store_true", help="sweep an eps x nbeta grid on a few seeds instead")
    g.add_argument("--first", type=int, default=None, metavar="N",
                   help="only the first N runs, the rows of seeds.npz (default: all; 4 with --calibrate)")
    g.add_argument("--eps-grid", type=float, nargs="+", default=list(EPS_GRID), metavar="EPS", help="with --calibrate")
    g.add_argument("--nbeta-grid", type=float, nargs="+", default=list(NBETA_GRID), metavar="NBETA",
                   help="with --calibrate")
    g.add_argument("--overwrite", action="store_true", help="replace estimates saved by an earlier run")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def _finished_sweep(root: Path, checkpoints: bool) -> tuple[dict, SweepConfig, str]:
    """The saved sweep, its config and the parameter folder to read; refuses anything but a finished sweep."""
    sweep = load_sweep(root)
    params = "checkpoints" if checkpoints else "params"
    if not (root / params).is_dir():
        hint = " (run the sweep with --keep-every K to save checkpoints)" if checkpoints else ""
        raise UserError(f"No sweep results in {root}: {params}/ is missing{hint}.")
    if checkpoints and "checkpoint_epochs" not in sweep["traces"]:
        raise UserError(f"{root / 'traces.npz'} lacks checkpoint_epochs; were the checkpoints saved by a sweep?")
    try:
        cfg = SweepConfig.from_dict(sweep["config"]["sweep"])
    except (KeyError, TypeError) as e:
        raise UserError(f"{root / 'config.json'} does not hold a valid sweep config ({e}).") from None
    return sweep, cfg, params


def _refuse_to_replace(paths: list[Path], overwrite: bool) -> None:
    existing = [p.name for p in paths if p.exists()]
    if existing and not overwrite:
        raise UserError(f"{', '.join(existing)} already exist in {paths[0].parent}; pass --overwrite to replace them.")
    try:
        probe = paths[0].parent / ".llc_write_test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UserError(f"Cannot write to {paths[0].parent}: {e.strerror or e}.") from None


def _summary_lines(sweep: dict, runs: np.ndarray, llc: np.ndarray, label: str) -> list[str]:
    """Printed table: mean, median and spread of the (runs,) estimates by outcome, fully diverged runs left out."""
    outcomes = seed_outcomes(sweep["seeds"]["grokked"][runs], sweep["group_names"])
    names = category_names(sweep["group_names"])
    width = max(len("outcome"), *(len(n) for n in names))
    lines = [f"{'outcome':<{width}}  {'runs':>6}  {label + ' mean':>12}  {'median':>9}  {'std':>9}"]
    for name in names:
        values = llc[outcomes == name]
        values = values[np.isfinite(values)]
        if len(values):
            lines.append(f"{name:<{width}}  {len(values):>6}  {values.mean():>12.4g}  {np.median(values):>9.4g}  "
                         f"{values.std():>9.4g}")
    return lines


def _rhat_line(rhat: np.ndarray, chains: int, n_diverged: np.ndarray) -> str:
    """Diverged chains, and split-R-hat above 1.1 and undetermined (NaN: fewer than two finite chains) apart."""
    undetermined = int(np.sum(np.isnan(rhat)))
    return (f"diverged chains: {int(n_diverged.sum())} of {n_diverged.size * chains}; "
            f"split-R-hat above 1.1: {int(np.sum(rhat > 1.1))} of {rhat.size} estimates"
            + (f", undetermined (NaN, fewer than two finite chains): {undetermined}" if undetermined else ""))


def _write_all_or_nothing(outputs: list[Path], arrays: dict, info: dict) -> None:
    """Write the npz and the json, or neither: both go to temporary names first and are renamed only once both are
    written; on failure the temporary files are removed (earlier results stay as they were) and UserError is raised."""
    partial = [path.with_name(f".{path.name}.partial") for path in outputs]
    try:
        storage.write_arrays(partial[0], arrays)
        storage.write_json(partial[1], info)
        for tmp, path in zip(partial, outputs):
            os.replace(tmp, path)
    except OSError as e:
        for tmp in partial:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
        raise UserError(f"Could not write the results to {outputs[0].parent} ({e.strerror or e}), so none were "
                        f"saved.") from None


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
    if a.workers < 0:
        raise UserError(f"--workers must be a non-negative integer (0: one per core), got {a.workers}.")
    workers = worker_count(a.workers, -(-total // cfg.models_per_call))
    estimate = estimate_llc
    if workers > 1:
        print(f"{workers} worker processes, {cfg.models_per_call} models per call")
        estimate = partial(estimate_llc_in_workers, make_loss=sweep_loss, make_loss_args=(sweep_cfg, a.behavioral),
                           workers=workers)
    with tqdm(total=total, unit="model", disable=a.no_progress, file=sys.stderr, dynamic_ncols=True) as bar:
        update = lambda done: bar.update(done - bar.n)
        if a.checkpoints:
            result = estimate_llc_checkpoints(loss, params, checkpoint_keys(a.seed, runs, epochs), cfg, on_call=update,
                                              estimate=estimate)
        else:
            result = estimate(loss, params, seed_keys(a.seed, runs), cfg, on_call=update)
    arrays = {"run": runs, **result._asdict(), "trace_steps": cfg.trace_steps}
    lines = _summary_lines(sweep, runs, result.llc[:, -1] if a.checkpoints else result.llc, label)
    if a.checkpoints:
        arrays["epochs"] = epochs
        lines.insert(0, f"at the last checkpoint, epoch {epochs[-1]}:")
    lines.append(_rhat_line(result.rhat, cfg.chains, result.n_diverged))
    return arrays, lines


def main(argv=None):
    a = parse_args(argv)
    root = Path(a.results_dir)
    cfg = LLCConfig(eps=a.eps, nbeta=a.nbeta, gamma=a.gamma, steps=a.steps, chains=a.chains, burn_in=a.burn_in,
                    batch_size=a.batch_size, thin=a.thin, models_per_call=a.models_per_call)
    if not 0 <= a.seed < 2**32:
        raise UserError(f"The seed must be an integer in [0, 2**32), got {a.seed}.")
    if a.first is not None and a.first < 1:
        raise UserError(f"--first must be a positive integer, got {a.first}.")
    if a.calibrate:
        validate_grid(a.eps_grid, a.nbeta_grid, cfg)
    sweep, sweep_cfg, params_dir = _finished_sweep(root, a.checkpoints)
    kind = "behavioral_llc" if a.behavioral else "llc"
    label = "behavioral LLC" if a.behavioral else "LLC"
    name = kind + ("_checkpoints" if a.checkpoints else "_calibration" if a.calibrate else "")
    outputs = [root / f"{name}.npz", root / f"{name}.json"]
    _refuse_to_replace(outputs, a.overwrite)

    task = build_sweep_task(sweep_cfg)
    loss = sweep_loss(sweep_cfg, a.behavioral)
    n_runs = len(sweep["seeds"]["grokked"])
    runs = np.arange(min(a.first or (4 if a.calibrate else n_runs), n_runs))
    params = jax.tree.map(lambda x: np.asarray(x[:len(runs)]), storage.load_params(root / params_dir))
    if not a.calibrate:
        cfg = dataclasses.replace(cfg, models_per_call=models_per_call(cfg, loss.bytes_per_chain))
    print(f"{label} of {len(runs)} runs of {root} ({task.n_train} training pairs) on {jax.devices()[0].platform}: "
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
    _write_all_or_nothing(outputs, arrays, info)
    print("\n".join(lines))
    print(f"{seconds:.1f} s with compilation, {rate:,.0f} model-chain-steps/s; wrote {outputs[0]} and {outputs[1]}")
    if a.calibrate:
        figure = root / "figures" / f"{name}.png"
        figure.parent.mkdir(exist_ok=True)
        save_figure(llc_calibration(arrays, label), figure)
        print(f"drew {figure}")


if __name__ == "__main__":
    run_cli(main)
