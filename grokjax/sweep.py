"""A sweep: many runs (grid points x seeds) of one config, trained in compiled calls and saved for analysis.

The sweep owns every effect: choosing chunks, progress, writing and resuming.
Seed i always gets the key `fold_in(PRNGKey(seed), i)`, and every compiled call
trains exactly `seeds_per_call` runs per device (the last one padded). XLA picks
kernels and reduction orders by shape, so a fixed call width is what makes a
run's numbers bit-for-bit independent of `n_seeds`, the chunk size, the workers
and the devices (a chunk is a whole number of calls, written at once); the width
is recorded with the results like the matmul precision. Each finished chunk is
written atomically to `chunks/`; at the end they are merged into the results
layout and removed:

    config.json   the sweep config, package versions, git commit, task summary
    task.npz      training pairs and labels, every group's table
    traces.npz    metrics every log_every epochs, run axis first
    seeds.npz     per run: seed, grid point, final values, fit and grok epochs, which groups grokked
    params/       final parameters of every run (orbax), run axis first
    checkpoints/  with keep_every: parameters (runs, checkpoints, ...)
    outcome.json  outcome fractions with confidence intervals (per grid point)
    run.json      timings, devices, workers and chunk size of the run
"""

import dataclasses
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import jax
import numpy as np
from tqdm import tqdm

from grokjax import execute, storage
from grokjax.errors import UserError
from grokjax.groups import parse_group
from grokjax.model import param_count
from grokjax.outcomes import CI_METHODS, first_epoch_at_least, format_summary, grokked, outcome_summary
from grokjax.tasks import Task, build_task
from grokjax.train import TrainConfig

CPU_SEEDS_PER_CALL = 8
"""Seeds per compiled call on CPU: small calls keep parameters, Adam state and activations in a core's own
cache (measured on 2 cores, default config, one pinned worker per core: 8 seeds per call ~27,000
model-epochs/s in all, 64 seeds ~19,000)."""
MAX_SEEDS_PER_CALL = 4096
MAX_CHUNK_RUNS = 1024
"""Chunk files hold at most this many runs, so an interrupt loses little work."""


@dataclass(frozen=True)
class SweepConfig:
    """Everything that determines a sweep's numbers; saved as config.json and compared on resume."""

    groups: tuple[str, ...] = ("S(4)", "times(A(4),Z(2))")
    task: str = "intersection"
    fraction: float = 1.0
    group_fractions: tuple[float, ...] = ()
    iid_group: int = 0
    data_seed: int = 0
    seed: int = 0
    n_seeds: int = 10000
    grok_threshold: float = 0.999
    ci_method: str = "wilson"
    seeds_per_call: int = 0  # 0: chosen for the device by `default_seeds_per_call`
    lr_grid: tuple[float, ...] = ()  # learning rates swept together with the seeds (empty: train.lr)
    weight_decay_grid: tuple[float, ...] = ()  # weight decays swept likewise (empty: train.weight_decay)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        if self.n_seeds < 1:
            raise UserError(f"The number of seeds must be a positive integer, got {self.n_seeds}.")
        if self.n_seeds >= 2**32:
            raise UserError(f"At most 2**32 - 1 seeds are supported, got {self.n_seeds}.")
        for name in ("seed", "data_seed"):
            if not 0 <= getattr(self, name) < 2**32:
                raise UserError(f"The {name.replace('_', ' ')} must be an integer in [0, 2**32), got {getattr(self, name)}.")
        if not 0 < self.grok_threshold <= 1:
            raise UserError(f"The grokking threshold must be in (0, 1], got {self.grok_threshold}.")
        if self.ci_method not in CI_METHODS:
            raise UserError(f"Unknown interval method '{self.ci_method}'; expected one of {', '.join(CI_METHODS)}.")
        if self.seeds_per_call < 0:
            raise UserError(f"Seeds per call must be a positive integer, got {self.seeds_per_call}.")
        if not self.groups:
            raise UserError("At least one group is needed.")
        for lr, wd in zip(*self.grid_values()):
            dataclasses.replace(self.train, lr=lr, weight_decay=wd)  # validates every grid value
        if self.n_runs >= 2**31:
            raise UserError(f"At most 2**31 - 1 runs (grid points x seeds) are supported, got {self.n_runs}.")

    def grid_values(self) -> tuple[list[float], list[float]]:
        """Learning rate and weight decay of every grid point, learning rate varying slowest."""
        lrs = self.lr_grid or (self.train.lr,)
        wds = self.weight_decay_grid or (self.train.weight_decay,)
        return [lr for lr in lrs for _ in wds], [wd for _ in lrs for wd in wds]

    @property
    def n_grid(self) -> int:
        return len(self.grid_values()[0])

    @property
    def n_runs(self) -> int:
        """Grid points x seeds; run r is seed r % n_seeds at grid point r // n_seeds."""
        return self.n_grid * self.n_seeds

    def to_dict(self) -> dict:
        """The config as plain JSON values (tuples become lists), as saved in config.json."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: dict) -> "SweepConfig":
        d = dict(d)
        d["train"] = TrainConfig(**d["train"])
        for key in ("groups", "group_fractions", "lr_grid", "weight_decay_grid"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)


def build_sweep_task(cfg: SweepConfig) -> Task:
    """Parse the groups and build the training set; every bad input is a UserError."""
    groups = [parse_group(spec) for spec in cfg.groups]
    return build_task(groups, cfg.task, cfg.fraction, cfg.group_fractions, cfg.iid_group, cfg.data_seed)


def default_seeds_per_call(task: Task, cfg: TrainConfig) -> int:
    """Width of the compiled call: the cache-friendly size on CPU; on accelerators a power of two
    that fits a quarter of the device's memory (its total, not what is free now, so that the
    choice, which fixes the numerics, is the same on every run of this device)."""
    device = jax.devices()[0]
    if device.platform == "cpu":
        return CPU_SEEDS_PER_CALL
    limit = (device.memory_stats() or {}).get("bytes_limit", 16 * 2**30)
    n, h = task.n, cfg.hidden_dim
    n_params = param_count(n, cfg.embed_dim, h)
    per_seed = 4 * (8 * n_params + 6 * task.n_train * max(h, n) + 3 * n * n * max(h, n))
    fits = max(1, limit // 4 // per_seed)
    return int(min(MAX_SEEDS_PER_CALL, 2 ** int(np.log2(fits))))


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
    """The sweep config saved in `root`, or None if `root` is not a grokjax results directory."""
    try:
        saved = storage.read_json(root / "config.json")
    except (OSError, ValueError):
        return None
    if not isinstance(saved, dict) or not {"sweep", "task", "environment"} <= saved.keys():
        return None
    return saved["sweep"]


def read_sweep_config(root) -> SweepConfig:
    """The config of the sweep saved in `root`, to resume it without repeating its options."""
    if not Path(root).exists():
        raise UserError(f"There is nothing to resume at {root}.")
    saved = _saved_config(Path(root)) if Path(root).is_dir() else None
    if saved is None:
        raise UserError(f"{root} holds no grokjax sweep to resume (no readable config.json).")
    try:
        return SweepConfig.from_dict(saved)
    except (TypeError, KeyError, ValueError) as e:
        raise UserError(f"The config.json in {root} is not a sweep config this version can read: {e}.") from None


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
    if root.exists() and not root.is_dir():
        raise UserError(f"The output path {root} exists and is not a directory.")
    saved = _saved_config(root) if root.exists() else None
    if root.exists() and resume:
        if saved is None:
            raise UserError(f"{root} holds no grokjax sweep to resume (no readable config.json).")
        diff = _differences(saved, cfg.to_dict())
        if diff:
            raise UserError(f"Cannot resume {root}: its config differs in {', '.join(diff)}.")
        return
    if root.exists() and any(root.iterdir()):
        if not overwrite:
            raise UserError(f"The output directory {root} already exists; pass --resume to continue it or --overwrite to replace it.")
        if saved is None:
            raise UserError(f"Refusing to overwrite {root}: it is not a grokjax results directory.")
        shutil.rmtree(root)
    if resume:
        raise UserError(f"There is nothing to resume at {root}.")
    try:
        (root / "chunks").mkdir(parents=True, exist_ok=True)
        probe = root / ".write_test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UserError(f"Cannot write to the output directory {root}: {e.strerror or e}.") from None


def _write_start(root: Path, cfg: SweepConfig, task: Task) -> None:
    summary = {"n": task.n, "n_train": task.n_train, "group_names": [g.name for g in task.groups]}
    storage.write_json(root / "config.json", {"sweep": cfg.to_dict(), "task": summary, "environment": storage.environment()})
    tables = np.stack([g.table for g in task.groups])
    storage.write_arrays(root / "task.npz", {"train_pairs": task.train_pairs, "train_labels": task.train_labels, "tables": tables})


def _train_chunks(root, cfg, task, chunk, pending, workers, progress, log, cache_dir) -> dict:
    """Train every pending chunk in whole calls and write each as soon as its calls are in; returns timings.

    The progress bar moves with every call; a run counts as trained once its chunk is written."""
    per_call = cfg.seeds_per_call * len(jax.local_devices())
    calls = {s: (start, stop) for start, stop in pending for s in range(start, stop, per_call)}
    runner, workers = execute.run_calls(task, cfg, list(calls), workers, log, cache_dir)
    todo = sum(stop - start for start, stop in pending)
    total = cfg.n_runs if jax.process_count() == 1 else todo  # a multi-host bar counts this process's runs
    compile_s = next(runner)  # before the bar, so the compile message gets its own line
    bar = tqdm(total=total, initial=total - todo, unit="run", disable=not progress, file=sys.stderr, dynamic_ncols=True)
    t0, trained, seen, parts = time.perf_counter(), 0, 0, {}
    with bar:
        for call_start, arrays in runner:
            start, stop = calls[call_start]
            parts.setdefault(start, {})[call_start] = arrays
            runs = min(call_start + per_call, stop) - call_start
            seen += runs
            bar.update(runs)
            bar.set_postfix_str(f"{seen * cfg.train.epochs / (time.perf_counter() - t0):,.0f} model-epochs/s")
            if len(parts[start]) < -(-(stop - start) // per_call):
                continue
            got = parts.pop(start)
            ordered = [got[s] for s in range(start, stop, per_call)]
            merged = {k: np.concatenate([p[k] for p in ordered])[: stop - start] for k in ordered[0]}
            storage.write_arrays(_chunk_path(root, start, stop), merged)
            trained += stop - start
    run_s = time.perf_counter() - t0
    return {"compile_s": compile_s, "run_s": run_s, "runs_trained": trained, "workers": workers,
            "model_epochs_per_s": trained * cfg.train.epochs / run_s if trained else None}


def _grid_outcomes(cfg: SweepConfig, task: Task, grok: np.ndarray) -> dict:
    """The outcome summary of each grid point ('grid' list), or the summary itself for a single point."""
    names = [g.name for g in task.groups]
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


def _merge(root: Path, cfg: SweepConfig, task: Task) -> dict:
    """Merge the chunk files into traces.npz, seeds.npz, params/ and outcome.json; returns the outcome."""
    merged = None
    for path in sorted((root / "chunks").glob("runs_*_*.npz")):  # one chunk in memory besides the merged arrays
        start, stop = _chunk_range(path)
        chunk = storage.read_arrays(path)
        if merged is None:
            merged = {k: np.empty((cfg.n_runs, *v.shape[1:]), v.dtype) for k, v in chunk.items()}
        for k, v in chunk.items():
            merged[k][start:stop] = v
    part = {p: {k.split("/", 1)[1]: v for k, v in merged.items() if k.startswith(p + "/")}
            for p in ("trace", "params", "checkpoints")}
    traces = part["trace"]
    epochs = np.arange(cfg.train.n_logs + 1) * cfg.train.log_every
    final = {f"final_{k}": v[:, -1] for k, v in traces.items()}
    grok = grokked(final["final_group_acc"], cfg.grok_threshold)
    fit = np.where((merged["fit_epoch"] < 0) & (final["final_train_acc"] == 1), cfg.train.epochs, merged["fit_epoch"])
    grok_epoch = np.stack([first_epoch_at_least(epochs, traces["group_acc"][..., g], cfg.grok_threshold)
                           for g in range(len(task.groups))], axis=1)
    summary = _grid_outcomes(cfg, task, grok)
    lr, wd = cfg.grid_values()
    grid, seed = np.divmod(np.arange(cfg.n_runs), cfg.n_seeds)
    extra = {}
    if part["checkpoints"]:
        extra["checkpoint_epochs"] = np.arange(0, cfg.train.epochs + 1, cfg.train.keep_every)
    storage.write_arrays(root / "traces.npz", {"epochs": epochs, **extra, **traces})
    storage.write_arrays(root / "seeds.npz", {
        "seed": seed, "grid_index": grid, "lr": np.asarray(lr, np.float32)[grid],
        "weight_decay": np.asarray(wd, np.float32)[grid], "fit_epoch": fit, "grok_epoch": grok_epoch,
        "grokked": grok, **final})
    for name in ("params", "checkpoints"):
        if (root / name).exists():
            shutil.rmtree(root / name)
        if part[name]:
            storage.save_params(root / name, part[name])
    storage.write_json(root / "outcome.json", summary)
    shutil.rmtree(root / "chunks")
    return summary


def default_chunk_size(cfg: SweepConfig, task: Task) -> int:
    """Runs per chunk file: what fits an eighth of the free host memory, at most MAX_CHUNK_RUNS."""
    free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return int(max(1, min(MAX_CHUNK_RUNS, free // 8 // result_bytes_per_run(cfg, task))))


def result_bytes_per_run(cfg: SweepConfig, task: Task) -> int:
    """Host memory one run's saved arrays take: metric trace, final and kept parameters."""
    n_params = param_count(task.n, cfg.train.embed_dim, cfg.train.hidden_dim)
    n_kept = cfg.train.epochs // cfg.train.keep_every + 1 if cfg.train.keep_every else 0
    return 4 * ((cfg.train.n_logs + 1) * (4 + 2 * len(task.groups)) + n_params * (1 + n_kept) + 1)


def _barrier(name: str) -> None:
    """Wait for every process of a multi-host sweep (nothing to wait for in a single process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def run_sweep(cfg: SweepConfig, out_dir, chunk_size: int | None = None, resume: bool = False,
              overwrite: bool = False, progress: bool = True, log=print, workers: int = 0,
              cache_dir: str | None = execute.default_cache_dir()) -> dict:
    """Train every run (grid point x seed) of `cfg` into `out_dir`, resuming or replacing it if asked.

    `workers` is the number of CPU worker processes (0: one per core on a one-device CPU); neither it
    nor `chunk_size` changes a number. Compiled programs are kept in `cache_dir` (None: not kept).
    In a multi-host run (`jax.distributed` initialised, `out_dir` on a shared filesystem, hosts
    alike), every process calls this: process 0 prepares and merges, and chunk j is trained by
    process j % process_count on its local devices. Returns the outcome summary.
    """
    root = Path(out_dir)
    task = build_sweep_task(cfg)
    if chunk_size is not None and chunk_size < 1:
        raise UserError(f"The chunk size must be a positive integer, got {chunk_size}.")
    if workers < 0:
        raise UserError(f"The number of workers must be a positive integer, got {workers}.")
    if not cfg.seeds_per_call:
        cfg = dataclasses.replace(cfg, seeds_per_call=default_seeds_per_call(task, cfg.train))
    lead, plan = jax.process_index() == 0, root / "chunks" / "plan.json"
    log = log if lead else (lambda *_: None)
    per_call = cfg.seeds_per_call * len(jax.local_devices())
    if lead:
        _prepare_directory(root, cfg, resume, overwrite)
        if not (root / "outcome.json").exists():
            if not resume:
                _write_start(root, cfg, task)
            (root / "chunks").mkdir(exist_ok=True)
            chunk = -(-(chunk_size or default_chunk_size(cfg, task)) // per_call) * per_call  # whole calls
            storage.write_json(plan, {"chunk_size": chunk})
    _barrier("grokjax-sweep-prepared")
    if (root / "outcome.json").exists():
        log(f"{root} is already complete.")
        return storage.read_json(root / "outcome.json")
    chunk = storage.read_json(plan)["chunk_size"]
    pending = _pending_chunks(_done_runs(root, cfg.n_runs), chunk)
    grid = f" x {cfg.n_grid} grid points" if cfg.n_grid > 1 else ""
    hosts = f" on each of {jax.process_count()} processes" if jax.process_count() > 1 else ""
    log(f"{task.n_train} training pairs of {task.n * task.n}; groups {', '.join(g.name for g in task.groups)}; "
        f"{cfg.n_seeds} seeds{grid} x {cfg.train.epochs} epochs on {jax.devices()[0].platform}{hosts}; writing to {root}")
    log(f"chunks of {chunk} runs ({result_bytes_per_run(cfg, task) / 2**10:,.0f} KiB of results per run in memory)")
    execute.use_compile_cache(cache_dir)
    mine = pending[jax.process_index()::jax.process_count()]
    timing = _train_chunks(root, cfg, task, chunk, mine, workers, progress and lead, log, cache_dir) if mine else {}
    _barrier("grokjax-sweep-trained")
    if lead:
        summary = _merge(root, cfg, task)
        storage.write_json(root / "run.json", {"chunk_size": chunk, "device": str(jax.devices()[0]),
                                               "n_devices": len(jax.local_devices()),
                                               "n_processes": jax.process_count(), **timing})
        log(_format_outcomes(summary))
    _barrier("grokjax-sweep-merged")
    return storage.read_json(root / "outcome.json")
