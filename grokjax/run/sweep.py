"""A sweep: many runs (grid points x seeds) of one config, trained in compiled calls and saved for analysis.

The sweep owns every effect: choosing chunks, progress, writing and resuming; the calls themselves go through
the runner (`grokjax.run.runner`). Seed i always gets the key `fold_in(PRNGKey(seed), i)`, and every compiled
call trains exactly `seeds_per_call` runs per device (the last one padded), which makes a run's numbers
bit-for-bit independent of `n_seeds`, the chunk size, the workers and the devices (a chunk is a whole number of
calls, written at once); the width is recorded with the results like the matmul precision. Each finished chunk
is written atomically to `chunks/`; at the end they are merged into the results layout and removed:

    config.json   the sweep config (schema 2: problem, model, optimizer, schedule), versions, git commit, task
    task.npz      the problem's arrays (for groups: training pairs and labels, every group's table)
    traces.npz    metrics every log_every units, run axis first
    seeds.npz     per run: seed, grid point, final values, fit and grok epochs, which sets were reached
    params/       final parameters of every run (orbax), run axis first
    opt_state/    final optimizer state of every run (orbax; leaves named by path, e.g. '1.mu.w_left')
    checkpoints/  with keep_every: parameters (runs, checkpoints, ...), and checkpoint_opt_state/ beside them
    outcome.json  outcome fractions with confidence intervals (per grid point)
    run.json      timings, devices, workers and chunk size of the run
"""

import dataclasses
import os
import shutil
import sys
import time
from pathlib import Path

import jax
import numpy as np
from tqdm import tqdm

from grokjax.analysis.outcomes import first_epoch_at_least, format_summary, grokked, outcome_summary
from grokjax.errors import UserError
from grokjax.problems.base import Data
from grokjax.run import runner, storage
from grokjax.run.outdir import check_replaceable, check_writable
from grokjax.run.results import read_config_json
from grokjax.run.specs import SweepConfig, config_json, read_config
from grokjax.train import make_trainer, seed_keys

MAX_CHUNK_RUNS = 1024
"""Chunk files hold at most this many runs, so an interrupt loses little work."""
STATE_PARTS = ("trace", "params", "opt_state", "checkpoints", "checkpoint_opt_state")
"""Groups of chunk arrays; all but the trace are saved as orbax checkpoints of that name."""


def sweep_program(cfg: SweepConfig):
    """The runner's program of a sweep: every run of a call trained by `vmap` of the pure `Trainer.train`."""
    return jax.vmap(make_trainer(cfg.problem.build(), cfg).train)


def run_inputs(cfg: SweepConfig, runs=None) -> tuple:
    """Init keys and hyperparameters of the given runs (default all), run axis first, as numpy arrays."""
    runs = np.arange(cfg.n_runs) if runs is None else np.asarray(runs)
    lr, wd = cfg.grid_values()
    grid, seed = np.divmod(runs, cfg.n_seeds)
    hparams = {"lr": np.asarray(lr, np.float32)[grid], "weight_decay": np.asarray(wd, np.float32)[grid]}
    return np.asarray(seed_keys(cfg.seed, seed)), hparams


def with_call_width(cfg: SweepConfig) -> SweepConfig:
    """`cfg` with its seeds per call chosen by the runner's width policy if it is 0."""
    if cfg.seeds_per_call:
        return cfg
    width = runner.call_width((sweep_program, (cfg,)), run_inputs(cfg, np.arange(min(cfg.n_runs, 8))))
    return dataclasses.replace(cfg, seeds_per_call=width)


def flat_outputs(outputs) -> dict:
    """A call's (final state, trace, kept states) as the flat arrays of a chunk file."""
    state, trace, kept = outputs
    arrays = {f"trace/{k}": v for k, v in trace._asdict().items()}
    arrays.update({f"params/{k}": v for k, v in storage.named_leaves(state.params).items()})
    arrays.update({f"opt_state/{k}": v for k, v in storage.named_leaves(state.opt_state).items()})
    arrays["fit_epoch"] = state.fit_epoch
    if kept is not None:
        arrays.update({f"checkpoints/{k}": v for k, v in storage.named_leaves(kept.params).items()})
        arrays.update({f"checkpoint_opt_state/{k}": v for k, v in storage.named_leaves(kept.opt_state).items()})
        arrays["checkpoint_fit_epoch"] = kept.fit_epoch
    return arrays


def _chunk_path(root: Path, start: int, stop: int) -> Path:
    return root / "chunks" / f"runs_{start:08d}_{stop:08d}.npz"


def _chunk_range(path: Path) -> tuple[int, int]:
    """The (start, stop) runs of a chunk file named by `_chunk_path`."""
    start, stop = (int(x) for x in path.stem.split("_")[1:])
    return start, stop


def _done_runs(root: Path, n_runs: int) -> np.ndarray:
    done = np.zeros(n_runs, bool)
    for path in (root / "chunks").glob("runs_*_*.npz"):
        start, stop = _chunk_range(path)
        done[start:stop] = True
    return done


def _pending_chunks(done: np.ndarray, chunk: int):
    """(start, stop) ranges of unfinished runs, at most `chunk` long."""
    todo = np.flatnonzero(~done)
    ranges, i = [], 0
    while i < len(todo):
        start = todo[i]
        stop = start
        while i < len(todo) and todo[i] == stop and stop - start < chunk:
            stop, i = stop + 1, i + 1
        ranges.append((int(start), int(stop)))
    return ranges


def _saved_config(root: Path) -> dict | None:
    """The config.json saved in `root` (as saved), or None if `root` is not a grokjax sweep directory."""
    return read_config_json(root, "sweep")


def read_sweep_config(root) -> SweepConfig:
    """The config of the sweep saved in `root`, to resume or analyse it without repeating its options."""
    if not Path(root).exists():
        raise UserError(f"There is nothing to resume at {root}.")
    saved = _saved_config(Path(root)) if Path(root).is_dir() else None
    if saved is None:
        raise UserError(f"{root} holds no grokjax sweep (no readable config.json).")
    return read_config(saved, str(Path(root) / "config.json"))


def _differences(saved: dict, wanted: dict, prefix: str = "") -> list[str]:
    """Dotted names of the settings that differ between two config dicts."""
    out = []
    for key in sorted(saved.keys() | wanted.keys()):
        a, b = saved.get(key), wanted.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}")
    return out


def _prepare_directory(root: Path, cfg: SweepConfig, resume: bool, overwrite: bool) -> None:
    """Create, check or clear the results directory; refuse anything that would mix or lose results."""
    saved = _saved_config(root) if root.is_dir() else None
    if root.is_dir() and resume:
        if saved is None:
            raise UserError(f"{root} holds no grokjax sweep to resume (no readable config.json).")
        diff = _differences(read_config(saved, str(root / "config.json")).to_dict(), cfg.to_dict())
        if diff:
            raise UserError(f"Cannot resume {root}: its config differs in {', '.join(diff)}.")
        return
    if check_replaceable(root, overwrite, saved is not None, "grokjax", " --resume to continue it or"):
        shutil.rmtree(root)
    if resume:
        raise UserError(f"There is nothing to resume at {root}.")
    check_writable(root)
    try:
        (root / "chunks").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"Cannot write to the output directory {root}: {e.strerror or e}.") from None


def _write_start(root: Path, cfg: SweepConfig, data: Data) -> None:
    summary = {**data.summary, "group_names": list(data.eval_names)}  # every reader names outcomes by these
    storage.write_json(root / "config.json", config_json(cfg, summary, storage.environment()))
    storage.write_arrays(root / "task.npz", data.arrays)


def _train_chunks(root, cfg, pending, workers, progress, log, cache_dir) -> dict:
    """Train every pending chunk in whole calls and write each as soon as its calls are in; returns timings.

    The progress bar moves with every call; a run counts as trained once its chunk is written."""
    per_call = cfg.seeds_per_call * len(jax.local_devices())
    calls = {s: (start, stop) for start, stop in pending for s in range(start, stop, per_call)}
    calls_run = runner.run_program((sweep_program, (cfg,)), run_inputs(cfg), cfg.seeds_per_call, list(calls),
                                   workers, cache_dir)
    todo = sum(stop - start for start, stop in pending)
    total = cfg.n_runs if jax.process_count() == 1 else todo  # a multi-host bar counts this process's runs
    compiled = next(calls_run)  # before the bar, so the compile message gets its own line
    where = (f"in each of {compiled.workers} worker processes" if compiled.workers > 1 else
             f"for {len(jax.local_devices())} {jax.devices()[0].platform} device(s)")
    memory = ("" if compiled.bytes_per_item is None else
              f"; {compiled.bytes_per_item / 2**10:,.0f} KiB of device memory per run ({cfg.seeds_per_call} runs per call)")
    log(f"compiled in {compiled.seconds:.1f} s {where}{memory}")
    bar = tqdm(total=total, initial=total - todo, unit="run", disable=not progress, file=sys.stderr, dynamic_ncols=True)
    t0, trained, seen, parts = time.perf_counter(), 0, 0, {}
    with bar:
        for call_start, outputs in calls_run:
            start, stop = calls[call_start]
            parts.setdefault(start, {})[call_start] = flat_outputs(outputs)
            runs = min(call_start + per_call, stop) - call_start
            seen += runs
            bar.update(runs)
            bar.set_postfix_str(f"{seen * cfg.schedule.length / (time.perf_counter() - t0):,.0f} model-{cfg.schedule.unit}/s")
            if len(parts[start]) < -(-(stop - start) // per_call):
                continue
            got = parts.pop(start)
            ordered = [got[s] for s in range(start, stop, per_call)]
            merged = {k: np.concatenate([p[k] for p in ordered])[: stop - start] for k in ordered[0]}
            storage.write_arrays(_chunk_path(root, start, stop), merged)
            trained += stop - start
    run_s = time.perf_counter() - t0
    rate = trained * cfg.schedule.length / run_s if trained else None
    return {"compile_s": compiled.seconds, "run_s": run_s, "runs_trained": trained, "workers": compiled.workers,
            f"model_{cfg.schedule.unit}_per_s": rate}


def _grid_outcomes(cfg: SweepConfig, names, grok: np.ndarray) -> dict:
    """The outcome summary of each grid point ('grid' list), or the summary itself for a single point."""
    lr, wd = cfg.grid_values()
    summaries = [outcome_summary(grok[g * cfg.n_seeds:(g + 1) * cfg.n_seeds], names, method=cfg.ci_method)
                 for g in range(cfg.n_grid)]
    if cfg.n_grid == 1:
        return summaries[0]
    return {"grid": [{"lr": a, "weight_decay": b, **s} for a, b, s in zip(lr, wd, summaries)]}


def _format_outcomes(summary: dict) -> str:
    if "grid" not in summary:
        return format_summary(summary)
    return "\n\n".join(f"lr {s['lr']:g}, weight decay {s['weight_decay']:g}\n{format_summary(s)}" for s in summary["grid"])


def _merge(root: Path, cfg: SweepConfig, data: Data) -> dict:
    """Merge the chunk files into traces.npz, seeds.npz, params/ and outcome.json; returns the outcome."""
    merged = None
    for path in sorted((root / "chunks").glob("runs_*_*.npz")):  # one chunk in memory besides the merged arrays
        start, stop = _chunk_range(path)
        chunk = storage.read_arrays(path)
        if merged is None:
            merged = {k: np.empty((cfg.n_runs, *v.shape[1:]), v.dtype) for k, v in chunk.items()}
        for k, v in chunk.items():
            merged[k][start:stop] = v
    part = {p: {k.split("/", 1)[1]: v for k, v in merged.items() if k.startswith(p + "/")} for p in STATE_PARTS}
    traces = part["trace"]
    sched = cfg.schedule
    epochs = np.arange(sched.n_logs + 1) * sched.log_every
    final = {f"final_{k}": v[:, -1] for k, v in traces.items()}
    grok = grokked(final["final_group_acc"], cfg.grok_threshold)
    if sched.batch_size:  # minibatches: the first logged time with every training point right
        fit = first_epoch_at_least(epochs, traces["train_acc"], 1.0)
    else:
        fit = np.where((merged["fit_epoch"] < 0) & (final["final_train_acc"] == 1), sched.length, merged["fit_epoch"])
    grok_epoch = np.stack([first_epoch_at_least(epochs, traces["group_acc"][..., g], cfg.grok_threshold)
                           for g in range(len(data.eval_names))], axis=1)
    summary = _grid_outcomes(cfg, data.eval_names, grok)
    lr, wd = cfg.grid_values()
    grid, seed = np.divmod(np.arange(cfg.n_runs), cfg.n_seeds)
    extra = {}
    if part["checkpoints"]:
        extra["checkpoint_epochs"] = np.arange(0, sched.length + 1, sched.keep_every)
        extra["checkpoint_fit_epoch"] = merged["checkpoint_fit_epoch"]
    storage.write_arrays(root / "traces.npz", {"epochs": epochs, **extra, **traces})
    storage.write_arrays(root / "seeds.npz", {
        "seed": seed, "grid_index": grid, "lr": np.asarray(lr, np.float32)[grid],
        "weight_decay": np.asarray(wd, np.float32)[grid], "fit_epoch": fit, "grok_epoch": grok_epoch,
        "grokked": grok, **final})
    for name in STATE_PARTS[1:]:
        if (root / name).exists():
            shutil.rmtree(root / name)
        if part[name]:
            storage.save_params(root / name, part[name])
    storage.write_json(root / "outcome.json", summary)
    shutil.rmtree(root / "chunks")
    return summary


def default_chunk_size(cfg: SweepConfig, data: Data) -> int:
    """Runs per chunk file: what fits an eighth of the free host memory, at most MAX_CHUNK_RUNS."""
    free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return int(max(1, min(MAX_CHUNK_RUNS, free // 8 // result_bytes_per_run(cfg, data))))


def result_bytes_per_run(cfg: SweepConfig, data: Data) -> int:
    """Host memory one run's saved arrays take: metric trace, final and kept states (parameters and optimizer
    state), from the shapes of one run's outputs."""
    outputs = jax.eval_shape(make_trainer(data, cfg).train, jax.random.PRNGKey(0), cfg.hparams())
    return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(outputs))


def _barrier(name: str) -> None:
    """Wait for every process of a multi-host sweep (nothing to wait for in a single process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def run_sweep(cfg: SweepConfig, out_dir, chunk_size: int | None = None, resume: bool = False,
              overwrite: bool = False, progress: bool = True, log=print, workers: int = 0,
              cache_dir: str | None = runner.default_cache_dir()) -> dict:
    """Train every run (grid point x seed) of `cfg` into `out_dir`, resuming or replacing it if asked.

    `workers` is the number of CPU worker processes (0: one per core on a one-device CPU); neither it
    nor `chunk_size` changes a number. Compiled programs are kept in `cache_dir` (None: not kept).
    In a multi-host run (`jax.distributed` initialised, `out_dir` on a shared filesystem, hosts
    alike), every process calls this: process 0 prepares and merges, and chunk j is trained by
    process j % process_count on its local devices. Returns the outcome summary.
    """
    root = Path(out_dir)
    data = cfg.problem.build()
    if chunk_size is not None and chunk_size < 1:
        raise UserError(f"The chunk size must be a positive integer, got {chunk_size}.")
    if workers < 0:
        raise UserError(f"The number of workers must be a positive integer, got {workers}.")
    cfg = with_call_width(cfg)
    lead, plan = jax.process_index() == 0, root / "chunks" / "plan.json"
    log = log if lead else (lambda *_: None)
    per_call = cfg.seeds_per_call * len(jax.local_devices())
    if lead:
        _prepare_directory(root, cfg, resume, overwrite)
        if not (root / "outcome.json").exists():
            if not resume:
                _write_start(root, cfg, data)
            (root / "chunks").mkdir(exist_ok=True)
            chunk = -(-(chunk_size or default_chunk_size(cfg, data)) // per_call) * per_call  # whole calls
            storage.write_json(plan, {"chunk_size": chunk})
    _barrier("grokjax-sweep-prepared")
    if (root / "outcome.json").exists():
        log(f"{root} is already complete.")
        return storage.read_json(root / "outcome.json")
    chunk = storage.read_json(plan)["chunk_size"]
    pending = _pending_chunks(_done_runs(root, cfg.n_runs), chunk)
    grid = f" x {cfg.n_grid} grid points" if cfg.n_grid > 1 else ""
    hosts = f" on each of {jax.process_count()} processes" if jax.process_count() > 1 else ""
    log(f"{data.n_train} training points of {data.n_points}; {cfg.model.kind} on {cfg.problem.kind}: "
        f"{', '.join(data.eval_names)}; {cfg.n_seeds} seeds{grid} x {cfg.schedule.length} {cfg.schedule.unit} on "
        f"{jax.devices()[0].platform}{hosts}; writing to {root}")
    log(f"chunks of {chunk} runs ({result_bytes_per_run(cfg, data) / 2**10:,.0f} KiB of results per run in memory)")
    runner.use_compile_cache(cache_dir)
    mine = pending[jax.process_index()::jax.process_count()]
    timing = _train_chunks(root, cfg, mine, workers, progress and lead, log, cache_dir) if mine else {}
    _barrier("grokjax-sweep-trained")
    if lead:
        summary = _merge(root, cfg, data)
        storage.write_json(root / "run.json", {"chunk_size": chunk, "device": str(jax.devices()[0]),
                                               "n_devices": len(jax.local_devices()),
                                               "n_processes": jax.process_count(), **timing})
        log(_format_outcomes(summary))
    _barrier("grokjax-sweep-merged")
    return storage.read_json(root / "outcome.json")
