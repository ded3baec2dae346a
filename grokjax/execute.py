"""Where a sweep's compiled calls run: every local device at once, or worker processes on CPU cores.

A *call* trains `width` runs per device with one compiled program, `vmap` over
runs inside `shard_map` over a mesh of devices. Every device runs exactly the
program a one-device sweep runs, so a run's numbers do not depend on the device
count. On a CPU the XLA runtime executes one program at a time on about one
core, so a sweep uses one worker process per core instead, each compiling the
same program; the numbers are again the same bit for bit.

A run is one (grid point, seed) pair: run r trains seed r % n_seeds with the
learning rate and weight decay of grid point r // n_seeds, which enter as
arrays, so no grid value is compiled in.
"""

import multiprocessing
import os
import queue
import signal
import time
import traceback
from typing import Callable, Iterator

import jax
import numpy as np
from jax.sharding import PartitionSpec

from grokjax.errors import UserError
from grokjax.train import make_trainer, seed_keys

AXIS = "runs"


def default_cache_dir() -> str:
    """Where compiled programs are kept between runs: $GROKJAX_CACHE_DIR, else ~/.cache/grokjax/xla."""
    return os.environ.get("GROKJAX_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "grokjax", "xla")


def use_compile_cache(path: str | None) -> None:
    """Keep every compiled program in `path` (None: no persistent cache), so a second run of a config skips
    compilation; the cached program is the same machine code, so no number changes."""
    if path is None:
        return
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def compile_call(task, cfg, width: int, devices) -> tuple[Callable, float, dict]:
    """The compiled call of `width` runs per device on `devices`; returns it, its compile time and memory use.

    The call takes per-run keys and hyperparameter arrays (run axis first) and
    returns (final TrainState, Metrics trace, checkpoint params or None).
    """
    trainer = make_trainer(task, cfg.train)
    fn = jax.vmap(trainer.train)
    if len(devices) > 1:
        mesh = jax.sharding.Mesh(np.array(devices), (AXIS,))
        fn = jax.shard_map(fn, mesh=mesh, in_specs=PartitionSpec(AXIS), out_specs=PartitionSpec(AXIS), check_vma=False)
    total = width * len(devices)
    args = run_inputs(cfg, np.zeros(total, np.int64))
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    seconds = time.perf_counter() - t0
    mem = compiled.memory_analysis()
    per_device = None if mem is None else (mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes)
    return compiled, seconds, {"bytes_per_run": None if per_device is None else per_device / width}


def run_inputs(cfg, runs: np.ndarray):
    """Init keys and hyperparameters of the given run indices."""
    lr, wd = cfg.grid_values()
    grid, seed = np.divmod(runs, cfg.n_seeds)
    hparams = {"lr": np.asarray(lr, np.float32)[grid], "weight_decay": np.asarray(wd, np.float32)[grid]}
    return seed_keys(cfg.seed, seed), hparams


def call_results(compiled, cfg, start: int, total: int) -> dict:
    """Train runs start .. start + total - 1 (indices past the last run repeat it) and return numpy arrays."""
    runs = np.minimum(np.arange(start, start + total), cfg.n_runs - 1)
    state, trace, kept = compiled(*run_inputs(cfg, runs))
    arrays = {f"trace/{k}": v for k, v in trace._asdict().items()}
    arrays.update({f"params/{k}": v for k, v in state.params.items()})
    if kept is not None:
        arrays.update({f"checkpoints/{k}": v for k, v in kept.items()})
    arrays["fit_epoch"] = state.fit_epoch
    return jax.tree.map(np.asarray, arrays)


def start_distributed(coordinator: str | None, num_processes: int | None, process_id: int | None) -> None:
    """Join a multi-host run through `jax.distributed` (arguments None: detected from SLURM, Open MPI, ...).

    Call before anything touches a device. On CPUs, cross-process barriers go through Gloo.
    """
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(coordinator, num_processes, process_id)
    except (RuntimeError, ValueError) as e:
        raise UserError(f"Could not join the multi-host run: {str(e).splitlines()[0]}") from None


def default_workers() -> int:
    """Worker processes for a CPU sweep: one per core this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def in_process(task, cfg, starts: list[int], log) -> Iterator:
    """Run the calls at `starts` here, on every local device at once.

    Like `in_workers`, yields the compile time first, then (start, arrays) per call.
    """
    devices = jax.local_devices()
    compiled, seconds, mem = compile_call(task, cfg, cfg.seeds_per_call, devices)
    log(f"compiled in {seconds:.1f} s for {len(devices)} {devices[0].platform} device(s)" + _memory(mem, cfg))
    yield seconds
    total = cfg.seeds_per_call * len(devices)
    for start in starts:
        yield start, call_results(compiled, cfg, start, total)


def _memory(mem: dict, cfg) -> str:
    b = mem["bytes_per_run"]
    return "" if b is None else f"; {b / 2**10:,.0f} KiB of device memory per run ({cfg.seeds_per_call} runs per call)"


def _pinned(target, args, results, parent: int, core: int | None) -> None:
    """A worker process: send each message the generator `target(*args)` yields to the parent through `results`.

    Pinned to its own core when there are cores enough: measured on 2 cores, two unpinned sweep workers
    reach about 22,000 model-epochs/s and two pinned ones about 27,000. Stops when the parent is gone.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops the workers
    if core is not None:
        os.sched_setaffinity(0, {core})
    try:
        for message in target(*args):
            if os.getppid() != parent:  # the parent was killed: nobody will read what is queued
                results.cancel_join_thread()
                return
            results.put(message)
    except BaseException:
        results.put(("failed", traceback.format_exc(), None))


class PinnedPool:
    """Spawned worker processes, one per tuple of `worker_args`, each pinned to its own core when there are cores
    enough and running the generator `target(*args)` (a module-level function) whose (kind, a, b) messages
    `get` returns. A worker that dies or raises makes `get` raise RuntimeError; `close` (or leaving the `with`
    block) stops every worker."""

    def __init__(self, target, worker_args: list[tuple], what: str = "worker"):
        ctx = multiprocessing.get_context("spawn")
        self.what = what
        self.results = ctx.Queue()
        cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_setaffinity") else []
        pin = len(cores) >= len(worker_args)
        self.procs = [ctx.Process(target=_pinned, daemon=True,
                                  args=(target, args, self.results, os.getpid(), cores[i] if pin else None))
                      for i, args in enumerate(worker_args)]
        for p in self.procs:
            p.start()

    def get(self) -> tuple:
        """The next message of any worker."""
        while True:
            try:
                kind, a, b = self.results.get(timeout=5)
            except queue.Empty:
                if any(p.exitcode not in (None, 0) for p in self.procs):
                    raise RuntimeError(f"A {self.what} process died (out of memory?).") from None
                continue
            if kind == "failed":
                raise RuntimeError(f"A {self.what} process failed:\n{a}")
            return kind, a, b

    def close(self) -> None:
        for p in self.procs:
            if p.is_alive():
                p.terminate()
            p.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _worker(cfg, task, starts, cache_dir) -> Iterator[tuple]:
    """A sweep worker: compile the one-device call, then train its calls and yield the arrays."""
    use_compile_cache(cache_dir)
    compiled, seconds, mem = compile_call(task, cfg, cfg.seeds_per_call, jax.local_devices()[:1])
    yield "compiled", seconds, mem
    for start in starts:
        yield "done", start, call_results(compiled, cfg, start, cfg.seeds_per_call)


def in_workers(task, cfg, starts: list[int], n_workers: int, log, cache_dir: str | None) -> Iterator:
    """Run the calls at `starts` in `n_workers` CPU processes (calls dealt round-robin).

    Yields the compile time once every worker has compiled, then (start, arrays) per call.
    """
    args = [(cfg, task, starts[i::n_workers], cache_dir) for i in range(n_workers)]
    with PinnedPool(_worker, args, "sweep worker") as pool:
        compile_s, early, remaining = [], [], len(starts)
        while remaining:
            kind, a, b = pool.get()
            if kind == "compiled":
                compile_s.append(a)
                if len(compile_s) == n_workers:
                    log(f"compiled in {max(compile_s):.1f} s in each of {n_workers} worker processes" + _memory(b, cfg))
                    yield max(compile_s)
                    yield from early
                continue
            remaining -= 1
            if len(compile_s) < n_workers:
                early.append((a, b))
            else:
                yield a, b


def worker_count(requested: int, n_calls: int) -> int:
    """Worker processes for `n_calls` compiled calls: on a one-device CPU `requested` (0: one per core), at
    most one per call; elsewhere 1, every call running in this process on every local device."""
    cpu = jax.local_devices()[0].platform == "cpu" and len(jax.local_devices()) == 1
    if requested > 1 and not cpu:
        raise UserError("Worker processes are for a one-device CPU; on accelerators every local device is used at once.")
    return max(1, min(requested or (default_workers() if cpu else 1), n_calls))


def run_calls(task, cfg, starts: list[int], workers: int, log, cache_dir: str | None) -> tuple[Iterator, int]:
    """Run the calls at `starts` as a sweep does: in `worker_count` worker processes on a one-device CPU, else
    here on every local device. Returns the iterator of `in_process` / `in_workers` and the number of workers."""
    workers = worker_count(workers, len(starts))
    if workers > 1:
        return in_workers(task, cfg, starts, workers, log, cache_dir), workers
    return in_process(task, cfg, starts, log), 1

