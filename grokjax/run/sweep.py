"""A sweep: many runs (grid points x seeds) of one config, trained in compiled calls and saved for analysis.

The sweep owns every effect: choosing chunks, progress, writing and resuming; the calls themselves go through
the runner (`grokjax.run.runner`). Seed i always gets the key `fold_in(PRNGKey(seed), i)`, and every compiled
call trains exactly `seeds_per_call` runs per device (the last one padded), which makes a run's numbers
bit-for-bit independent of `n_seeds`, the chunk size, the workers and the devices (a chunk is a whole number of
calls, written at once); the width is recorded with the results like the matmul precision. Each finished chunk
is written atomically to `chunks/`; at the end they are merged, one chunk at a time (host memory holds one chunk
however many runs), into the results layout, and removed:

    config.json   the sweep config (schema 2: problem, model, optimizer, schedule), versions, git commit, task
    task.npz      the problem's arrays (for groups: training pairs and labels, every group's table)
    traces.npz    metrics every log_every units, run axis first
    seeds.npz     per run: seed, grid point, final values, fit and grok epochs, which sets were reached
    params/       final parameters of every run, run axis first (one .npy per leaf; `storage.load_params`)
    opt_state/    final optimizer state of every run (leaves named by path, e.g. '1.mu.w_left')
    checkpoints/  with keep_every: parameters (runs, checkpoints, ...), and checkpoint_opt_state/ beside them
    outcome.json  outcome fractions with confidence intervals (per grid point), diverged runs counted apart
    run.json      timings, devices, workers and chunk size of the run (written last: the sweep is complete)

Reliability (the mechanisms are `grokjax.run.outdir`'s, shared by every script): the directory is locked while
a process writes it; it appears with its config.json, task.npz and chunks/plan.json at once (they are written
into `.NAME.new` and renamed); `--overwrite` trains into `.NAME.new` beside the old results and swaps it in only
when complete; sizes that cannot fit (device memory per call, host memory per chunk, disk for the results) are
refused before anything is written; corrupt chunk files are discarded and retrained on resume; a run whose loss
or parameters became non-finite is flagged `diverged` and counted apart; an interrupt or a fault of the
environment at any moment ends with one sentence naming the directory and the command that continues.
"""

import contextlib
import dataclasses
import os
import re
import sys
import time
import zipfile
import zlib
from pathlib import Path

import jax
import numpy as np
from tqdm import tqdm

from grokjax.analysis.outcomes import (first_epoch_at_least, format_grid_summary, format_summary, grokked,
                                       outcome_counts, summary_from_counts)
from grokjax.errors import UserError
from grokjax.problems.base import Data
from grokjax.run import outdir, runner, storage
from grokjax.run.outdir import Fault, check_replaceable, event, size
from grokjax.run.results import read_config_json
from grokjax.run.grid import MANY_POINTS, grid_label, point_labels
from grokjax.run.specs import SweepConfig, config_json, read_config
from grokjax.train import make_trainer, seed_keys

MAX_CHUNK_RUNS = 1024
"""Chunk files hold at most this many runs, so an interrupt loses little work."""
STATE_PARTS = ("trace", "params", "opt_state", "checkpoints", "checkpoint_opt_state")
"""Groups of chunk arrays; all but the trace are saved as parameter directories of that name."""
SWEEP_FILES = ("config.json", "task.npz", "traces.npz", "seeds.npz", "outcome.json", "run.json", "chunks", "figures",
               *STATE_PARTS[1:])
"""What a sweep writes in its directory: a directory holding only these (and temporary files) is a sweep's."""
CHUNK_NAME = re.compile(r"runs_(\d+)_(\d+)\.npz")


def sweep_program(cfg: SweepConfig):
    """The runner's program of a sweep: every run of a call trained by `vmap` of the pure `Trainer.train`."""
    return jax.vmap(make_trainer(cfg.data(), cfg).train)


def run_inputs(cfg: SweepConfig, runs=None) -> tuple:
    """Init keys and hyperparameters of the given runs (default all), run axis first, as numpy arrays."""
    runs = np.arange(cfg.n_runs) if runs is None else np.asarray(runs)
    grid, seed = np.divmod(runs, cfg.n_seeds)
    hparams = {k: np.asarray(v, np.float32)[grid] for k, v in cfg.grid().items()}
    return np.asarray(seed_keys(cfg.seed, seed)), hparams


class SweepInputs(runner.LazyInputs):
    """The inputs of every run of `cfg`, made call by call (`run_inputs`): a sweep of millions of runs never holds
    all its keys."""

    def __init__(self, cfg: SweepConfig):
        self.cfg = cfg

    def __len__(self) -> int:
        return self.cfg.n_runs

    def take(self, rows) -> tuple:
        return run_inputs(self.cfg, rows)


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


def chunk_spec(cfg: SweepConfig, data: Data) -> dict:
    """Name -> (shape, dtype) of one run's arrays in a chunk file, from the shapes of one run's outputs."""
    outputs = jax.eval_shape(make_trainer(data, cfg).train, jax.random.PRNGKey(0), cfg.hparams())
    return {k: (tuple(v.shape), np.dtype(v.dtype)) for k, v in flat_outputs(outputs).items()}


def result_bytes_per_run(cfg: SweepConfig, data: Data) -> int:
    """Host memory (and disk) one run's saved arrays take: metric trace, final and kept states (parameters and
    optimizer state), from the shapes of one run's outputs."""
    return sum(int(np.prod(shape)) * dtype.itemsize for shape, dtype in chunk_spec(cfg, data).values())


def default_chunk_size(bytes_per_run: int) -> int:
    """Runs per chunk file: what fits an eighth of the available host memory, at most MAX_CHUNK_RUNS."""
    return int(max(1, min(MAX_CHUNK_RUNS, runner.host_available_bytes() // 8 // max(bytes_per_run, 1))))


def _chunk_path(root: Path, start: int, stop: int) -> Path:
    return root / "chunks" / f"runs_{start:08d}_{stop:08d}.npz"


def _chunk_range(path: Path) -> tuple[int, int] | None:
    """The (start, stop) runs of a chunk file named by `_chunk_path` (None: not such a name)."""
    match = CHUNK_NAME.fullmatch(path.name)
    return (int(match[1]), int(match[2])) if match else None


def _chunk_files(root: Path) -> list[tuple[int, int, Path]]:
    """(start, stop, path) of every chunk file in `root`/chunks, by start."""
    chunks = root / "chunks"
    found = [(*r, p) for p in chunks.glob("runs_*_*.npz") if (r := _chunk_range(p))] if chunks.is_dir() else []
    return sorted(found)


def _read_chunk(path: Path, spec: dict, n: int) -> dict | None:
    """The arrays of a chunk file of `n` runs, or None if it cannot be read whole or is not what `spec` says (a
    file cut short, damaged, or written by another version)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if sorted(z.files) != sorted(spec):
                return None
            arrays = {k: z[k] for k in z.files}  # reads every member to its end: zip checks its CRC
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error):
        return None
    for k, (shape, dtype) in spec.items():
        if arrays[k].shape != (n, *shape) or arrays[k].dtype != dtype:
            return None
    return arrays


def _check_chunks(root: Path, n_runs: int, spec: dict) -> int:
    """Remove the chunk files of `root` that cannot be used (unreadable, of the wrong runs or shapes, overlapping
    an earlier one), so their runs are trained again; returns how many."""
    removed, covered = 0, 0
    for start, stop, path in _chunk_files(root):
        if not (covered <= start < stop <= n_runs) or _read_chunk(path, spec, stop - start) is None:
            outdir.remove(path)
            removed += 1
            continue
        covered = stop
    return removed


def _done_ranges(root: Path) -> list[tuple[int, int]]:
    return [(start, stop) for start, stop, _ in _chunk_files(root)]


def _pending_chunks(done: list[tuple[int, int]], n_runs: int, chunk: int) -> list[tuple[int, int]]:
    """(start, stop) ranges of the runs no chunk file holds, at most `chunk` long: the gaps between `done` ranges,
    cut into pieces (memory in the number of chunk files, not of runs)."""
    ranges, position = [], 0
    for start, stop in sorted(done) + [(n_runs, n_runs)]:
        while position < start:
            end = min(start, position + chunk)
            ranges.append((position, end))
            position = end
        position = max(position, stop)
    return ranges


def _saved_config(root: Path) -> dict | None:
    """The config.json saved in `root` (as saved), or None if `root` is not a grokjax sweep directory."""
    return read_config_json(root, "sweep") if Path(root).is_dir() else None


def read_sweep_config(root) -> SweepConfig:
    """The config of the sweep saved in `root`, to resume or analyse it without repeating its options."""
    if not Path(root).exists():
        raise UserError(f"There is nothing to resume at {root}.")
    saved = _saved_config(Path(root))
    if saved is None:
        raise UserError(f"{root} holds no grokjax sweep (no readable config.json).")
    return read_config(saved, str(Path(root) / "config.json"))


def run_stage(cfg: SweepConfig, out_dir, overwrite: bool = False, **options) -> dict:
    """`run_sweep` of one stage of a larger study (a challenge's setting, an efficiency circuit, ...): resumed, or
    found complete, if `out_dir` already holds a sweep's config; else trained, replacing an old directory only with
    `overwrite`. So running a study's command again continues where it stopped."""
    started = (Path(out_dir) / "config.json").is_file()
    return run_sweep(cfg, out_dir, resume=started, overwrite=overwrite and not started, **options)


def read_resumable_config(root) -> SweepConfig:
    """The config `--resume --out root` continues: that of an interrupted `--overwrite` of `root` (its new sweep,
    staged beside it) if there is one, else that of `root`."""
    stage = outdir.stage_path(root)
    if _saved_config(stage) is not None:
        return read_config(_saved_config(stage), str(stage / "config.json"))
    return read_sweep_config(root)


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


def _only_sweep_files(root: Path) -> bool:
    """Whether `root` is a directory holding nothing but what a sweep writes (an interrupted start of an earlier
    version, say): then --overwrite may replace it."""
    return root.is_dir() and all(p.name in SWEEP_FILES or outdir.is_temporary(p.name) for p in root.iterdir())


def _complete(root: Path) -> bool:
    """A sweep directory whose merge finished: run.json is written last, before its chunks are removed."""
    return (root / "outcome.json").is_file() and (root / "run.json").is_file() and not (root / "chunks").exists()


def _write_start(root: Path, cfg: SweepConfig, data: Data) -> None:
    summary = {**data.summary, "group_names": list(data.eval_names)}  # every reader names outcomes by these
    storage.write_json(root / "config.json", config_json(cfg, summary, storage.environment()))
    storage.write_arrays(root / "task.npz", data.arrays)


class _Where:
    """Where a sweep stands, for the sentence that ends an interrupt or a fault: what was kept, how to continue."""

    def __init__(self, root: Path, resume: bool):
        self.root, self.existed, self.resume, self.phase, self.staged = root, root.exists(), resume, "start", False

    def hint(self) -> str:
        root = self.root
        if self.phase in ("start", "init") and self.resume:
            return f"{root} is unchanged: run again with --resume --out {root} to continue"
        if self.phase in ("start", "init"):
            unchanged = f"{root} is unchanged" if self.existed else "nothing was written"
            return f"{unchanged}: run the same command again"
        if self.phase == "done":
            return f"the results in {root} are complete"
        if self.phase == "commit":
            return (f"{root} still holds its earlier results and the complete new ones are beside it: run again with "
                    f"--resume --out {root} to put them in place")
        if self.staged:
            return (f"{root} still holds its earlier results and the new sweep's finished chunks are kept beside it: "
                    f"run again with --resume --out {root} to continue replacing them (or with --overwrite to start "
                    f"the replacement again)")
        if self.phase == "merge":
            return f"its chunks are kept: run again with --resume --out {root} to finish the merge"
        return f"finished chunks are saved in {root}/chunks: run again with --resume --out {root} to continue"


def _train_chunks(root, cfg, pending, workers, progress, log, cache_dir, prepared=None) -> dict:
    """Train every pending chunk in whole calls and write each as soon as its calls are in; returns timings.

    The progress bar moves with every call; a run counts as trained once its chunk is written."""
    per_call = cfg.seeds_per_call * len(jax.local_devices())
    calls = {s: (start, stop) for start, stop in pending for s in range(start, stop, per_call)}
    calls_run = runner.run_program((sweep_program, (cfg,)), SweepInputs(cfg), cfg.seeds_per_call, list(calls),
                                   workers, cache_dir, prepared, what="run", option="--seeds-per-call")
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
    with bar, contextlib.closing(calls_run):
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


def _grid_outcomes(cfg: SweepConfig, names, counts: np.ndarray, diverged: np.ndarray) -> dict:
    """The outcome summary of each grid point ('grid' list), or the summary itself for a single point, from the
    outcome counts (grid points, outcomes) of the runs that did not diverge and the diverged runs per point."""
    grid = cfg.grid()
    summaries = [summary_from_counts(counts[g], int(diverged[g]), names, method=cfg.ci_method)
                 for g in range(cfg.n_grid)]
    if cfg.n_grid == 1:
        return summaries[0]
    names = cfg.problem.names() if "variant" in grid else None
    return {"grid": [{**{k: v[g] for k, v in grid.items()}, **({"variant_name": names[grid["variant"][g]]} if names
                                                                else {}), **s} for g, s in enumerate(summaries)]}


def _format_outcomes(summary: dict) -> str:
    if "grid" not in summary:
        return format_summary(summary)
    points = summary["grid"]
    if len(points) > MANY_POINTS:
        return format_grid_summary(points, point_labels(points))
    return "\n\n".join(f"{grid_label(s)}\n{format_summary(s)}" for s in points)


def diverged_runs(chunk: dict) -> np.ndarray:
    """(runs,) booleans: the run's logged training or group loss, or its final parameters or optimizer state, are
    not all finite (from the arrays of a chunk file)."""
    n = len(chunk["fit_epoch"])
    bad = np.zeros(n, bool)
    for k, v in chunk.items():
        part = k.split("/", 1)[0]
        if (k in ("trace/train_loss", "trace/group_loss") or part in ("params", "opt_state")) and \
                np.issubdtype(v.dtype, np.floating):
            bad |= ~np.isfinite(v.reshape(n, -1)).all(axis=1)
    return bad


def _seed_rows(chunk: dict, cfg: SweepConfig, n_groups: int, epochs: np.ndarray, start: int, stop: int) -> dict:
    """The seeds.npz rows of the runs start .. stop - 1 from their chunk: each run's values from its own arrays."""
    sched = cfg.schedule
    traces = {k.split("/", 1)[1]: v for k, v in chunk.items() if k.startswith("trace/")}
    final = {f"final_{k}": v[:, -1] for k, v in traces.items()}
    grok = grokked(final["final_group_acc"], cfg.grok_threshold)
    if sched.batch_size:  # minibatches: the first logged time with every training point right
        fit = first_epoch_at_least(epochs, traces["train_acc"], 1.0)
    else:
        fit = np.where((chunk["fit_epoch"] < 0) & (final["final_train_acc"] == 1), sched.length, chunk["fit_epoch"])
    grok_epoch = np.stack([first_epoch_at_least(epochs, traces["group_acc"][..., g], cfg.grok_threshold)
                           for g in range(n_groups)], axis=1)
    grid, seed = np.divmod(np.arange(start, stop), cfg.n_seeds)
    hparams = {k: np.asarray(v, np.float32)[grid] for k, v in cfg.grid().items()}
    return {"seed": seed, "grid_index": grid, **hparams, "fit_epoch": fit, "grok_epoch": grok_epoch,
            "grokked": grok, "diverged": diverged_runs(chunk), **final}


def _merge(root: Path, cfg: SweepConfig, data: Data, spec: dict) -> tuple[dict, int]:
    """Stream the chunk files, one at a time in run order, into traces.npz, seeds.npz, the parameter directories
    and outcome.json: host memory holds one chunk and the outcome counts, however many runs. Every output is
    built in `root/.merge` and renamed into place; the chunks stay (a merge interrupted anywhere is done again
    by --resume). Returns the outcome summary and the number of diverged runs."""
    chunks, covered = _chunk_files(root), 0
    for start, stop, _ in chunks:
        if start != covered:
            break
        covered = stop
    if covered != cfg.n_runs:
        raise Fault(f"The chunk files in {root / 'chunks'} do not hold every run (run {covered} is missing)")
    work = root / ".merge"
    outdir.remove(work)
    work.mkdir()
    try:
        return _merge_into(root, work, cfg, data, spec, chunks)
    finally:
        outdir.remove(work)


def _merge_into(root: Path, work: Path, cfg: SweepConfig, data: Data, spec: dict, chunks) -> tuple[dict, int]:
    """`_merge`'s work, in the scratch directory `work`."""
    n, sched, n_groups = cfg.n_runs, cfg.schedule, len(data.eval_names)
    epochs = np.arange(sched.n_logs + 1) * sched.log_every
    writers, trace_names, seed_names, leaves = {}, [], [], {p: [] for p in STATE_PARTS[1:]}
    counts = np.zeros((cfg.n_grid, 2 ** n_groups), np.int64)
    diverged = np.zeros(cfg.n_grid, np.int64)

    def put(key: str, path: Path, block: np.ndarray) -> None:
        if key not in writers:
            path.parent.mkdir(exist_ok=True)
            writers[key] = storage.NpyWriter(path, (n, *block.shape[1:]), block.dtype)
        writers[key].write(block)

    try:
        for start, stop, path in chunks:
            event(f"merge {path.name}")
            chunk = _read_chunk(path, spec, stop - start)
            if chunk is None:
                outdir.remove(path)
                raise Fault(f"The chunk file {path} could not be read (corrupt or cut short) and was removed")
            rows = _seed_rows(chunk, cfg, n_groups, epochs, start, stop)
            for k, v in chunk.items():
                part, _, leaf = k.partition("/")
                if part == "trace":
                    put(k, work / f"trace.{leaf}.npy", v)
                    trace_names += [leaf] if start == 0 else []
                elif part in leaves:
                    put(k, work / part / storage.leaf_file(leaf), v)
                    leaves[part] += [leaf] if start == 0 else []
                elif k == "checkpoint_fit_epoch":
                    put(k, work / f"{k}.npy", v)
            for k, v in rows.items():
                put(f"seeds/{k}", work / f"seeds.{k}.npy", v)
                seed_names += [k] if start == 0 else []
            for g in np.unique(rows["grid_index"]):
                at = rows["grid_index"] == g
                counts[g] += outcome_counts(rows["grokked"][at & ~rows["diverged"]].reshape(-1, n_groups))
                diverged[g] += int(np.sum(at & rows["diverged"]))
            del chunk, rows
        for w in writers.values():
            w.close()
    finally:
        for w in writers.values():
            w.abort()
    extra = {}
    if leaves["checkpoints"]:
        extra = {"checkpoint_epochs": np.arange(0, sched.length + 1, sched.keep_every),
                 "checkpoint_fit_epoch": writers["checkpoint_fit_epoch"].path}
    storage.write_npz_files(work / "traces.npz", {"epochs": epochs, **extra,
                                                  **{k: writers[f"trace/{k}"].path for k in trace_names}})
    storage.write_npz_files(work / "seeds.npz", {k: writers[f"seeds/{k}"].path for k in seed_names})
    for part, names in leaves.items():
        if names:
            storage.write_params_index(work / part, names)
    for name in ("traces.npz", "seeds.npz", *STATE_PARTS[1:]):
        target = root / name
        if target.exists() and name in STATE_PARTS:
            event(f"merge: remove the earlier {name}")
            outdir.remove(target)
        if (work / name).exists():
            event(f"merge: {name} in place")
            os.replace(work / name, target)
    summary = _grid_outcomes(cfg, data.eval_names, counts, diverged)
    storage.write_json(root / "outcome.json", summary)
    return summary, int(diverged.sum())


def _barrier(name: str) -> None:
    """Wait for every process of a multi-host sweep (nothing to wait for in a single process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def _check_same(saved: dict, cfg: SweepConfig, where: Path, root: Path) -> None:
    diff = _differences(read_config(saved, str(where / "config.json")).to_dict(), cfg.to_dict())
    if diff:
        raise UserError(f"Cannot resume {root}: its config differs in {', '.join(diff)}.")


def _prepare(root: Path, cfg: SweepConfig, data: Data, resume: bool, overwrite: bool, chunk_size, workers,
             where: _Where, log, warn):
    """The lead process's start, with the lock held: decide where the sweep is written (`root`, or its stage beside
    it when replacing it), refuse whatever would mix or lose results and every size that cannot fit (disk for the
    results, host memory per chunk, memory per call, compiling the program to measure it) before anything is
    written; then write the start (config, task, plan) all at once, or check the chunks of a resumed sweep.

    Returns (directory to write, runs per chunk, chunk spec, `runner.Prepared` or None), or None when the sweep is
    already complete."""
    stage = outdir.stage_path(root)
    saved, staged = _saved_config(root), _saved_config(stage)
    if resume:
        if staged is not None:
            work = stage
        elif saved is not None:
            work = root
        elif root.is_dir():
            again = "; pass --overwrite to start it again" if _only_sweep_files(root) and any(root.iterdir()) else ""
            raise UserError(f"{root} holds no grokjax sweep to resume (no readable config.json){again}.")
        else:
            raise UserError(f"There is nothing to resume at {root}.")
        _check_same(staged if work == stage else saved, cfg, work, root)
        if _complete(work):
            if work == stage:
                outdir.commit(stage, root)  # an --overwrite killed just before its swap: finish it
                log(f"{root} is now replaced by the new results, which were complete.")
            else:
                log(f"{root} is already complete.")
            where.phase = "done"
            return None
    else:
        ours = saved is not None or _only_sweep_files(root)
        replacing = check_replaceable(root, overwrite, ours, "grokjax", " --resume to continue it or")
        work = stage if replacing else root
    where.staged = work == stage
    n = cfg.n_runs
    spec = chunk_spec(cfg, data)
    per_run = sum(int(np.prod(shape)) * dtype.itemsize for shape, dtype in spec.values())
    per_call = cfg.seeds_per_call * len(jax.local_devices())
    chunk = -(-(chunk_size or default_chunk_size(per_run)) // per_call) * per_call  # whole calls
    done = _done_ranges(work) if resume else []
    pending = _pending_chunks(done, n, chunk)
    pending_runs = sum(stop - start for start, stop in pending)
    outdir.check_disk(root, (pending_runs + n) * per_run,
                      f"the results of {n:,} runs ({size(per_run)} per run, held twice while the chunks are merged)",
                      "lower --n-seeds (or the grid), or free disk space")
    runner.check_host_memory(2 * min(chunk, -(-n // per_call) * per_call) * per_run,
                             f"A chunk of {chunk:,} runs ({size(per_run)} per run, held twice while it is assembled)",
                             "--chunk-size" if chunk > per_call else "--seeds-per-call (a chunk holds at least one call)")
    mine = pending[jax.process_index()::jax.process_count()]
    n_calls = sum(-(-(stop - start) // per_call) for start, stop in mine)
    prepared = (runner.prepare((sweep_program, (cfg,)), SweepInputs(cfg), cfg.seeds_per_call, workers, n_calls,
                               what="run", option="--seeds-per-call") if n_calls else None)
    # Everything is checked: from here on the sweep writes.
    if not resume:
        outdir.remove(stage)
        where.phase = "init"
        try:
            stage.mkdir()
            _write_start(stage, cfg, data)
            (stage / "chunks").mkdir()
            storage.write_json(stage / "chunks" / "plan.json", {"chunk_size": chunk})
            if work == root:
                if root.is_dir():
                    root.rmdir()  # empty: check_replaceable refused anything else
                event("rename the new sweep into place")
                os.replace(stage, root)
        except BaseException:
            outdir.remove(stage)
            raise
    else:
        if work == root:
            outdir.remove(stage)  # a staged start that never got its config: nothing to keep
        (work / "chunks").mkdir(exist_ok=True)
        removed = _check_chunks(work, n, spec)
        if removed:
            warn(f"{removed} chunk file(s) in {work / 'chunks'} could not be read (corrupt, cut short, or of another "
                 f"version) and were removed: their runs are trained again.")
        storage.write_json(work / "chunks" / "plan.json", {"chunk_size": chunk})
    where.phase = "train"
    return work, chunk, spec, prepared


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def run_sweep(cfg: SweepConfig, out_dir, chunk_size: int | None = None, resume: bool = False,
              overwrite: bool = False, progress: bool = True, log=print, workers: int = 0,
              cache_dir: str | None = runner.default_cache_dir(), warn=_warn) -> dict:
    """Train every run (grid point x seed) of `cfg` into `out_dir`, resuming or replacing it if asked.

    `workers` is the number of CPU worker processes (0: one per core on a one-device CPU); neither it
    nor `chunk_size` changes a number. Compiled programs are kept in `cache_dir` (None: not kept).
    In a multi-host run (`jax.distributed` initialised, `out_dir` on a shared filesystem, hosts
    alike), every process calls this: process 0 locks, prepares and merges, and chunk j is trained by
    process j % process_count on its local devices. Returns the outcome summary.

    Refusals (bad input, sizes that cannot fit, a directory another process writes) are UserErrors raised before
    anything is written; an interrupt is an `Interrupted`, and a fault of the environment a UserError, whose
    sentence names the directory and the command that continues (see `grokjax.run.outdir`). Runs whose loss or
    parameters became non-finite are flagged `diverged` in seeds.npz, counted apart, and `warn`ed about.
    """
    root = Path(out_dir)
    data = cfg.data()
    if chunk_size is not None and chunk_size < 1:
        raise UserError(f"The chunk size must be a positive integer, got {chunk_size}.")
    if workers < 0:
        raise UserError(f"The number of workers must be a non-negative integer (0: one per core), got {workers}.")
    cfg = with_call_width(cfg)
    lead = jax.process_index() == 0
    log = log if lead else (lambda *_: None)
    where = _Where(root, resume)
    runner.use_compile_cache(cache_dir)  # before the first compile: worker processes then load it from the cache
    with outdir.guard(where.hint), (outdir.locked(root) if lead else contextlib.nullcontext()):
        prepared = _prepare(root, cfg, data, resume, overwrite, chunk_size, workers, where, log, warn) if lead else None
        _barrier("grokjax-sweep-prepared")
        stage = outdir.stage_path(root)
        work = stage if (stage / "chunks").is_dir() else root
        if (work / "chunks").is_dir():
            spec = prepared[2] if prepared else chunk_spec(cfg, data)
            chunk = storage.read_json(work / "chunks" / "plan.json")["chunk_size"]
            pending = _pending_chunks(_done_ranges(work), cfg.n_runs, chunk)
            _barrier("grokjax-sweep-planned")  # every process has its list before any writes a chunk
            grid = f" x {cfg.n_grid} grid points" if cfg.n_grid > 1 else ""
            hosts = f" on each of {jax.process_count()} processes" if jax.process_count() > 1 else ""
            sizes = data.summary.get("n_train_by_fraction")
            points = f"{data.n_train}" if sizes is None else f"nested training sets of {', '.join(map(str, sizes))}"
            if data.variants is not None:
                fewest, most = min(data.summary["n_train_by_variant"]), max(data.summary["n_train_by_variant"])
                points = f"{len(data.variants)} problems with {fewest}" + (f" to {most}" if most > fewest else "")
            log(f"{points} training points of {data.n_points}; {cfg.model.kind} on {cfg.problem.kind}: "
                f"{', '.join(data.eval_names)}; {cfg.n_seeds} seeds{grid} x {cfg.schedule.length} {cfg.schedule.unit} "
                f"on {jax.devices()[0].platform}{hosts}; writing to {root}"
                + (" (beside the old results, which stay until the new ones are complete)" if work == stage else ""))
            per_run = sum(int(np.prod(shape)) * dtype.itemsize for shape, dtype in spec.values())
            log(f"chunks of {chunk} runs ({per_run / 2**10:,.0f} KiB of results per run in memory)")
            mine = pending[jax.process_index()::jax.process_count()]
            timing = (_train_chunks(work, cfg, mine, workers, progress and lead, log, cache_dir,
                                    prepared[3] if prepared else None) if mine else {})
            _barrier("grokjax-sweep-trained")
            if lead:
                where.phase = "merge"
                summary, n_diverged = _merge(work, cfg, data, spec)
                storage.write_json(work / "run.json", {"chunk_size": chunk, "device": str(jax.devices()[0]),
                                                       "n_devices": len(jax.local_devices()),
                                                       "n_processes": jax.process_count(), **timing})
                event("remove the chunks")
                os.replace(work / "chunks", work / ".chunks.done")
                outdir.remove(work / ".chunks.done")
                if work == stage:
                    where.phase = "commit"
                    outdir.commit(stage, root)
                where.phase = "done"
                log(_format_outcomes(summary))
                if n_diverged:
                    warn(f"{n_diverged} of {cfg.n_runs} runs diverged (non-finite loss or parameters): they are "
                         f"flagged in seeds.npz ('diverged') and left out of the outcome fractions.")
        _barrier("grokjax-sweep-merged")
    return storage.read_json(root / "outcome.json")
