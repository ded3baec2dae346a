"""One runner for every batched computation: fixed call width, padding, devices and CPU worker processes.

A *program* is `(build, args)`: `build(*args)` returns a pure function of a batch (leading axis of every input
leaf; the caller writes the `vmap` inside it, where it is seen). `run_program(program, inputs, width)` runs it
on the items of `inputs` in calls of exactly `width` items per device (the last call padded by repeating the
last item), because XLA chooses kernels and summation orders by shape: with a fixed width, item i's outputs are
bit-for-bit the same whatever the number of items, the calls chosen, the workers or the devices.

- Several local devices: each call shards its items over a mesh of all of them with `shard_map`; every device
  runs the program a one-device run runs.
- A one-device CPU: XLA's CPU runtime runs one program at a time on about one core, so calls are dealt
  round-robin to worker processes, one per core, each pinned to its core and compiling the same program
  (`build` and `args` must then be picklable: a module-level function and plain data).

The width policy is shared too (`call_width`): on CPU a fixed, cache-sized number of instances per call; on an
accelerator the largest power of two whose compiled footprint (measured, not estimated) fits a fraction of the
device's *total* memory, so the width, and with it the numerics, depends only on the machine and the problem.

Whatever the width (a user may choose it), a call must fit the memory there is: `prepare` compiles the program
and refuses, with one sentence naming the option to change, a call whose measured footprint (times the worker
processes that run calls at once on one host) is more than the memory available, before the caller writes
anything; `run_program` checks the same before its first call (with workers it compiles the program once in
this process first, to measure it before any worker starts). Inputs may be arrays or a `LazyInputs` (`len` and
`take(rows)`), so the inputs of millions of items are made call by call, never all at once. A worker process
that dies or fails is a `Fault`: one sentence, never a traceback.
"""

import multiprocessing
import os
import queue
import signal
import time
import traceback
from typing import Callable, Iterator, NamedTuple

import jax
import numpy as np
from jax.sharding import PartitionSpec

from grokjax.errors import UserError
from grokjax.run.outdir import Fault, size

AXIS = "runs"
CPU_INSTANCES_PER_CALL = 8
"""Model instances (a training run, an SGLD chain) per compiled call on CPU: small calls keep parameters,
optimizer state and activations in a core's own cache (measured on 2 cores, default sweep, one pinned worker
per core: 8 runs per call ~27,000 model-epochs/s in all, 64 runs ~19,000)."""
MAX_WIDTH = 4096


class Compiled(NamedTuple):
    """What `run_program` yields first: compile seconds, device bytes per item and the worker processes used."""

    seconds: float
    bytes_per_item: float | None
    workers: int


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


def total_memory_bytes(device=None) -> int:
    """All the device's memory, whatever is in use: on an accelerator its `bytes_limit`, on CPU the physical memory."""
    device = device or jax.devices()[0]
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats:
        return int(stats["bytes_limit"])
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def host_available_bytes() -> int:
    """Host memory a process may still take: the kernel's MemAvailable (free memory and reclaimable caches),
    within the container's memory limit (cgroup v2 or v1) if there is one."""
    available = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    if available is None:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit, usage = (open(f).read().strip() for f in (limit_file, usage_file))
            if limit.isdigit() and int(limit) < 2**60:
                available = min(available, max(int(limit) - int(usage), 0))
                break
        except (OSError, ValueError):
            continue
    return available


def free_memory_bytes(device=None) -> int:
    """Memory free now: on an accelerator its limit minus what is in use, on CPU `host_available_bytes`.

    Only to refuse early what cannot fit; widths use `total_memory_bytes`.
    """
    device = device or jax.devices()[0]
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats:
        return int(stats["bytes_limit"] - stats["bytes_in_use"])
    return host_available_bytes()


def check_call_memory(bytes_per_item: float | None, width: int, processes: int, what: str, option: str) -> None:
    """UserError, one sentence naming `option` (e.g. '--seeds-per-call'), if a call of `width` items (`what`,
    e.g. 'run') of `bytes_per_item` (measured) does not fit the memory available: a device's own on an
    accelerator, the host's on CPU, where `processes` worker processes each run a call at once."""
    if not bytes_per_item:
        return
    device = jax.local_devices()[0]
    available = free_memory_bytes(device)
    kind = "host" if device.platform == "cpu" else "device"
    concurrent = processes if device.platform == "cpu" else 1
    if bytes_per_item > available:
        raise UserError(f"One {what} needs {size(bytes_per_item)} of {kind} memory, more than the {size(available)} "
                        f"available: use a smaller problem or model.")
    need = bytes_per_item * width * concurrent
    if need > available:
        at_once = f" in each of {concurrent} worker processes" if concurrent > 1 else ""
        raise UserError(f"One call of {width} {what}s needs {size(bytes_per_item * width)} of {kind} memory{at_once}, "
                        f"more than the {size(available)} available: lower {option}"
                        f"{' or --workers' if concurrent > 1 else ''} (one {what} needs {size(bytes_per_item)}).")


def check_host_memory(need: float, what: str, option: str) -> None:
    """UserError naming `option` if `need` bytes of host memory (`what`, e.g. 'A chunk of 1024 runs') are more
    than the host has available."""
    available = host_available_bytes()
    if need > available:
        raise UserError(f"{what} holds {size(need)} in host memory, more than the {size(available)} available: "
                        f"lower {option}.")


def footprint(compiled, with_arguments: bool = False) -> int:
    """Bytes a compiled program needs: its temporaries and outputs (and its arguments if asked)."""
    stats = compiled.memory_analysis()
    if stats is None:
        return 0
    extra = stats.argument_size_in_bytes if with_arguments else 0
    return stats.temp_size_in_bytes + stats.output_size_in_bytes + extra


def fits(bytes_per_item: float, limit: int, memory_fraction: float = 0.5) -> int:
    """How many items fit in `memory_fraction` of the device's total memory: at least 1, at most `limit`."""
    return int(np.clip(memory_fraction * total_memory_bytes() // max(bytes_per_item, 1), 1, limit))


class LazyInputs:
    """Inputs made on demand: `len(inputs)` items, `inputs.take(rows)` the tuple of arrays of those rows. Must be
    picklable (a module-level class of plain data) to reach worker processes."""

    def __len__(self) -> int:
        raise NotImplementedError

    def take(self, rows) -> tuple:
        raise NotImplementedError


def item_count(inputs) -> int:
    """The number of items of `inputs` (arrays, item axis first, or a `LazyInputs`)."""
    return len(inputs) if isinstance(inputs, LazyInputs) else len(jax.tree.leaves(inputs)[0])


def batch_of(inputs, rows) -> tuple:
    """The items `rows` of every input leaf."""
    if isinstance(inputs, LazyInputs):
        return inputs.take(np.asarray(rows))
    return jax.tree.map(lambda x: np.asarray(x)[rows], inputs)


def padded_rows(start: int, size: int, n: int) -> np.ndarray:
    """Rows start .. start + size - 1, those past the last item repeating it: a call is always full."""
    return np.minimum(np.arange(start, start + size), n - 1)


def _batched(fn: Callable, devices) -> Callable:
    """`fn` over a batch split across `devices` (shard_map over the leading axis) if there are several."""
    if len(devices) == 1:
        return fn
    mesh = jax.sharding.Mesh(np.array(devices), (AXIS,))
    return jax.shard_map(fn, mesh=mesh, in_specs=PartitionSpec(AXIS), out_specs=PartitionSpec(AXIS), check_vma=False)


def compile_program(program: tuple, example, devices) -> tuple[Callable, float, float | None]:
    """The compiled program for `example` inputs (one full call) on `devices`: (call, seconds, bytes per item)."""
    build, args = program
    fn = _batched(build(*args), devices)
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*example).compile()
    seconds = time.perf_counter() - t0
    items = len(jax.tree.leaves(example)[0]) // len(devices)
    per_device = footprint(compiled, with_arguments=True)
    return compiled, seconds, (per_device / items if per_device else None)


def call_width(program: tuple, inputs, instances_per_item: int = 1, memory_fraction: float = 0.25,
               probe: int = 8) -> int:
    """Items per device in one call: on CPU `CPU_INSTANCES_PER_CALL` instances (at least one item); on an
    accelerator the largest power of two of items whose measured footprint (a `probe`-item program, compiled)
    fits `memory_fraction` of the device's total memory, at most MAX_WIDTH."""
    device = jax.devices()[0]
    if device.platform == "cpu":
        return max(1, CPU_INSTANCES_PER_CALL // instances_per_item)
    example = batch_of(inputs, padded_rows(0, probe, item_count(inputs)))
    _, _, per_item = compile_program(program, example, [device])
    n = fits(per_item or 1, MAX_WIDTH, memory_fraction)
    return int(2 ** int(np.log2(n)))


def default_workers() -> int:
    """Worker processes for a CPU run: one per core this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def worker_count(requested: int, n_calls: int) -> int:
    """Worker processes for `n_calls` compiled calls: on a one-device CPU `requested` (0: one per core), at
    most one per call; elsewhere 1, every call running in this process on every local device."""
    if requested < 0:
        raise UserError(f"The number of workers must be a non-negative integer (0: one per core), got {requested}.")
    cpu = jax.local_devices()[0].platform == "cpu" and len(jax.local_devices()) == 1
    if requested > 1 and not cpu:
        raise UserError("Worker processes are for a one-device CPU; on accelerators every local device is used at once.")
    return max(1, min(requested or (default_workers() if cpu else 1), n_calls))


class Prepared(NamedTuple):
    """What `prepare` measured: the worker processes to use, the compiled program (None: the workers compile it),
    its compile seconds and device bytes per item."""

    workers: int
    compiled: Callable | None
    seconds: float
    bytes_per_item: float | None


def prepare(program: tuple, inputs, width: int, workers: int = 0, n_calls: int | None = None, what: str = "item",
            option: str = "the items per call") -> Prepared:
    """Compile `program` in this process as `run_program` will run it and refuse, with one sentence naming
    `option`, a call that does not fit the memory available (`check_call_memory`): before the caller writes
    anything. With workers, they compile the same program again (from the compile cache when it is on)."""
    n = item_count(inputs)
    devices = jax.local_devices()
    workers = worker_count(workers, n_calls if n_calls is not None else -(-n // (width * len(devices))))
    devices = devices if workers == 1 else devices[:1]
    compiled, seconds, per_item = compile_program(program, batch_of(inputs, padded_rows(0, width * len(devices), n)),
                                                  devices)
    check_call_memory(per_item, width, workers, what, option)
    return Prepared(workers, compiled if workers == 1 else None, seconds, per_item)


def run_program(program: tuple, inputs, width: int, starts=None, workers: int = 0,
                cache_dir: str | None = None, prepared: Prepared | None = None, what: str = "item",
                option: str = "the items per call") -> Iterator:
    """Run `program` over the items of `inputs` (a tuple of PyTrees, item axis first, or a `LazyInputs`), `width`
    items per device per call. Calls begin at `starts` (default: every call, from item 0) and each covers
    `width` x devices items.

    Yields a `Compiled` first, then `(start, outputs)` per call as calls finish (in any order with workers),
    outputs as numpy arrays cut to the call's real items. On a one-device CPU, `workers` processes (0: one per
    core, at most one per call) run the calls; the outputs are the same bit for bit. A call that does not fit
    the memory available is refused (UserError naming `option`) before it runs; `prepared` (from `prepare`)
    gives the worker count and, in this process, the program already compiled.
    """
    n = item_count(inputs)
    devices = jax.local_devices()
    per_call = width * len(devices)
    starts = list(range(0, n, per_call)) if starts is None else list(starts)
    workers = prepared.workers if prepared is not None else worker_count(workers, len(starts))
    if workers > 1 and prepared is None:  # measure (and refuse) here, before any worker process starts
        prepare(program, inputs, width, workers, len(starts), what, option)
    if workers == 1:
        return _in_process(program, inputs, n, per_call, starts, devices, prepared, what, option)
    return _in_workers(program, inputs, n, width, starts, workers, cache_dir)


def _call(compiled, inputs, n: int, start: int, size: int):
    out = compiled(*batch_of(inputs, padded_rows(start, size, n)))
    return jax.tree.map(lambda x: np.asarray(x)[: min(size, n - start)], out)


def _in_process(program, inputs, n, per_call, starts, devices, prepared, what, option) -> Iterator:
    if prepared is not None and prepared.compiled is not None:
        compiled, seconds, per_item = prepared.compiled, prepared.seconds, prepared.bytes_per_item
    else:
        compiled, seconds, per_item = compile_program(program, batch_of(inputs, padded_rows(0, per_call, n)), devices)
        check_call_memory(per_item, per_call // len(devices), 1, what, option)
    yield Compiled(seconds, per_item, 1)
    for start in starts:
        yield start, _call(compiled, inputs, n, start, per_call)


def _worker(program, inputs, n, width, starts, cache_dir) -> Iterator[tuple]:
    """A worker process: compile the one-device program, then run its calls (`inputs`: its calls' rows, or the
    `LazyInputs` of every item)."""
    use_compile_cache(cache_dir)
    lazy = isinstance(inputs, LazyInputs)
    rows_of = (lambda i, start: padded_rows(start, width, n)) if lazy else \
        (lambda i, start: np.arange(i * width, (i + 1) * width))
    compiled, seconds, per_item = compile_program(program, batch_of(inputs, rows_of(0, starts[0])),
                                                  jax.local_devices()[:1])
    yield "compiled", seconds, per_item
    for i, start in enumerate(starts):
        out = compiled(*batch_of(inputs, rows_of(i, start)))
        yield "done", start, jax.tree.map(lambda x: np.asarray(x)[: min(width, n - start)], out)


def _in_workers(program, inputs, n, width, starts, n_workers, cache_dir) -> Iterator:
    """Deal the calls round-robin to `n_workers` pinned processes; each gets only its calls' (padded) items, or
    the `LazyInputs` to make them from."""
    args = []
    for w in range(n_workers):
        mine = starts[w::n_workers]
        if isinstance(inputs, LazyInputs):
            args.append((program, inputs, n, width, mine, cache_dir))
            continue
        rows = np.concatenate([padded_rows(s, width, n) for s in mine])
        args.append((program, batch_of(inputs, rows), n, width, mine, cache_dir))
    with PinnedPool(_worker, args, "worker") as pool:
        compile_s, early, remaining = [], [], len(starts)
        while remaining:
            kind, a, b = pool.get()
            if kind == "compiled":
                compile_s.append(a)
                if len(compile_s) == n_workers:
                    yield Compiled(max(compile_s), b, n_workers)
                    yield from early
                continue
            remaining -= 1
            if len(compile_s) < n_workers:
                early.append((a, b))
            else:
                yield a, b


def map_program(program: tuple, inputs, width: int, workers: int = 0, on_call: Callable | None = None,
                cache_dir: str | None = None, what: str = "item", option: str = "the items per call") -> tuple:
    """Every item's outputs of `run_program`, stacked in item order (numpy), and its `Compiled` record;
    `on_call(items_done)` after each call."""
    runner = run_program(program, inputs, width, workers=workers, cache_dir=cache_dir, what=what, option=option)
    compiled, parts, done = next(runner), {}, 0
    for start, out in runner:
        parts[start] = out
        done += len(jax.tree.leaves(out)[0])
        if on_call:
            on_call(done)
    return jax.tree.map(lambda *xs: np.concatenate(xs), *(parts[s] for s in sorted(parts))), compiled


def start_distributed(coordinator: str | None, num_processes: int | None, process_id: int | None) -> None:
    """Join a multi-host run through `jax.distributed` (arguments None: detected from SLURM, Open MPI, ...).

    Call before anything touches a device. On CPUs, cross-process barriers go through Gloo.
    """
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(coordinator, num_processes, process_id)
    except (RuntimeError, ValueError) as e:
        raise UserError(f"Could not join the multi-host run: {str(e).splitlines()[0]}") from None


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
                kind, a, b = self.results.get(timeout=0.5)
            except queue.Empty:
                dead = [p for p in self.procs if p.exitcode not in (None, 0)]
                if dead:
                    how = (f"killed by signal {-dead[0].exitcode}" if dead[0].exitcode < 0 else
                           f"exit status {dead[0].exitcode}")
                    raise Fault(f"A {self.what} process died ({how}: killed, or out of memory)") from None
                continue
            if kind == "failed":
                last = [line for line in str(a).strip().splitlines() if line.strip()][-1:] or ["unknown error"]
                raise Fault(f"A {self.what} process failed ({last[0].strip().rstrip('.')})")
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
