"""Training throughput of grokjax, side by side with a one-seed JAX loop and the PyTorch baseline.

    python benchmarks/throughput.py                      # S4 vs A4xZ2 (D=H=32) and S5 vs A5xZ2 (D=H=128)
    pip install torch                                    # optional: adds the PyTorch row

What is measured, for each config, in one run on this machine, in model-epochs per second (one model trained
for one full-batch epoch; metrics every 10 epochs included):

- grokjax as a sweep runs it: the sweep's program (`sweep_program`) and inputs (`run_inputs`) through the
  runner (`run_program`) at the sweep's width policy (`with_call_width`: `seeds_per_call` seeds per compiled
  call), on every local device or in worker processes pinned one per core, without the disk;
- a plain loop that jit-compiles the same pure `Trainer.train` for one seed and calls it seed after seed;
- the PyTorch baseline (`torch_baseline.py`: all seeds as one instanced model, as research code does it),
  if torch is installed;
- their ratios, and the hardware limit estimated from the FLOPs and bytes of one model-epoch against the
  machine's measured matmul rate and memory bandwidth.

Compilation is timed apart and excluded from the rates (no persistent compile cache is used, so the compile
column is a real compile). Only real runs count as work: padding of a last, partial call costs time but is not
counted.
"""

import argparse
import dataclasses
import importlib.util
import time

import jax
import numpy as np

from grokjax.models import MLP2Spec, n_params
from grokjax.problems import GroupsProblem
from grokjax.run import runner
from grokjax.run.specs import SweepConfig
from grokjax.run.sweep import run_inputs, sweep_program, with_call_width
from grokjax.train import Schedule, make_trainer, seed_keys

CONFIGS = {
    "s4": (("S(4)", "times(A(4),Z(2))"), 32),
    "s5": (("S(5)", "times(A(5),Z(2))"), 128),
}
DEFAULT_SIZES = {"s4": (1000, 3000), "s5": (128, 30)}  # seeds, epochs
LOG_EVERY = 10


def timed(fn):
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn())
    return out, time.perf_counter() - t0


def matmul_rate(n=2048, reps=10) -> float:
    """Measured float32 matmul FLOP/s of the default device (all its cores)."""
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n))
    f = jax.jit(lambda x: x @ x)
    jax.block_until_ready(f(a))
    _, dt = timed(lambda: [f(a) for _ in range(reps)])
    return 2 * n**3 * reps / dt


def memory_bandwidth(n=2**26, reps=10) -> float:
    """Measured bytes/s of streaming reads of a 256 MiB float32 array (a sum, so no output buffer is paged in)."""
    x = jax.numpy.ones(n)
    f = jax.jit(lambda v: v.sum())
    jax.block_until_ready(f(x))
    _, dt = timed(lambda: [f(x) for _ in range(reps)])
    return 4 * n * reps / dt


def work_per_model_epoch(cfg: SweepConfig, data) -> tuple[float, float]:
    """(FLOPs, bytes) of one full-batch MLP2 epoch plus the full-table metrics amortised over `log_every`.

    FLOPs: the matmuls (forward, and two products each in the backward pass).
    Bytes: float32 traffic of parameters, gradients and Adam moments (7 passes),
    the hidden activations (8 passes: pre-activation, ReLU, its two readers and
    the backward pass) and the logits (6 passes: softmax and its gradient).
    """
    n, m, log_every = data.vocab, data.n_train, cfg.schedule.log_every
    d, h = cfg.model.embed_dim, cfg.model.hidden_dim
    tables = 2 * (2 * n * d * h)  # E_l W_l, E_r W_r
    flops = 3 * (tables + 2 * m * h * n) + (tables + 2 * n * n * h * n) / log_every
    params = n_params(cfg.model.build(data))
    bytes_ = 4 * (7 * params + 8 * m * h + 6 * m * n + (2 * n * n * h + 3 * n * n * n) / log_every)
    return flops, bytes_


def runner_rate(program: tuple, inputs, width: int, workers: int, units: int) -> tuple[float, float, int, object]:
    """Run `program` over every item of `inputs` through the runner, as a sweep or an LLC estimate runs it
    (without the disk and without a persistent compile cache): (item-units/s from the moment every worker has
    compiled, compile seconds, worker processes, the outputs stacked in item order). Only real items count as
    work, not a last call's padding."""
    calls = runner.run_program(program, inputs, width, workers=workers, cache_dir=None)
    compiled = next(calls)
    t0 = time.perf_counter()
    done = dict(calls)
    seconds = time.perf_counter() - t0
    out = jax.tree.map(lambda *xs: np.concatenate(xs), *(done[s] for s in sorted(done)))
    return len(jax.tree.leaves(out)[0]) * units / seconds, compiled.seconds, compiled.workers, out


def engine_rate(cfg: SweepConfig, workers: int) -> tuple[float, float, int]:
    """Model-epochs/s of the sweep engine (as `run_sweep` runs it, without the disk), compile seconds, workers;
    `cfg.seeds_per_call` must be set (`with_call_width`)."""
    rate, compile_s, workers, _ = runner_rate((sweep_program, (cfg,)), run_inputs(cfg), cfg.seeds_per_call, workers,
                                              cfg.schedule.length)
    return rate, compile_s, workers


def loop_rate(cfg: SweepConfig, data, n_seeds: int) -> tuple[float, float]:
    """Model-epochs/s of one seed per call, seed after seed, and its compile seconds."""
    trainer = make_trainer(data, cfg)
    hp = cfg.hparams()
    one, compile_s = timed(lambda: jax.jit(trainer.train).lower(seed_keys(0, [0])[0], hp).compile())
    _, dt = timed(lambda: [one(seed_keys(0, [i])[0], hp) for i in range(n_seeds)])
    return n_seeds * cfg.schedule.length / dt, compile_s


def print_rows(rows: list, ours: float, unit: str, digits: int = 0) -> None:
    """The side-by-side table: (label, model-units/s or None, compile s or None, seeds, units) per row, each rate
    also as grokjax's ratio to it (`ours`, the first row's rate)."""
    print(f"  {'':44s}{f'model-{unit}/s':>15s}{'grokjax is':>12s}{'compile s':>11s}{f'seeds x {unit}':>16s}")
    for label, rate, comp, n, e in rows:
        r = "-" if rate is None else f"{rate:,.{digits}f}"
        ratio = "" if rate is None or label.startswith("grokjax") else f"{ours / rate:,.{digits + 1}f}x"
        c = "" if comp is None else f"{comp:.1f}"
        print(f"  {label:44s}{r:>15s}{ratio:>12s}{c:>11s}{f'{n} x {e}':>16s}")


def config_of(name: str, seeds: int, epochs: int) -> SweepConfig:
    groups, width = CONFIGS[name]
    return SweepConfig(problem=GroupsProblem(groups=groups), model=MLP2Spec(embed_dim=width, hidden_dim=width),
                       schedule=Schedule(length=epochs, log_every=LOG_EVERY), n_seeds=seeds)


def bench(name: str, seeds: int, epochs: int, args, flop_rate: float, bandwidth: float) -> None:
    cfg = with_call_width(config_of(name, seeds, epochs))
    data, groups, width = cfg.problem.build(), cfg.problem.groups, cfg.model.hidden_dim
    print(f"\n{' vs '.join(groups)}: N={data.vocab}, {data.n_train} training pairs, D=H={width}, "
          f"metrics every {LOG_EVERY} epochs, {cfg.seeds_per_call} seeds per call")
    ours, c_ours, workers = engine_rate(cfg, args.workers)
    rows = [(f"grokjax ({workers} worker{'s' * (workers > 1)})" if workers > 1 else "grokjax", ours, c_ours, seeds, epochs)]
    loop_seeds = min(args.loop_seeds, seeds)
    loop_epochs = epochs if name == "s4" else max(LOG_EVERY, epochs // 3 // LOG_EVERY * LOG_EVERY)
    loop_cfg = dataclasses.replace(cfg, schedule=Schedule(length=loop_epochs, log_every=LOG_EVERY))
    loop, c_loop = loop_rate(loop_cfg, data, loop_seeds)
    rows.append(("plain JAX loop, one seed a call", loop, c_loop, loop_seeds, loop_epochs))
    torch_epochs = args.torch_epochs if name == "s4" else max(2, args.torch_epochs // 10)
    if importlib.util.find_spec("torch") is None:
        rows.append(("PyTorch instanced (skipped: not installed)", None, None, seeds, torch_epochs))
    else:
        import torch_baseline

        task = cfg.problem.task_of()  # the baseline takes the group task: n, train_pairs, train_labels, eval_labels
        rows.append(("PyTorch instanced, torch.optim.Adam",
                     torch_baseline.rate(task, seeds, width, width, torch_epochs, LOG_EVERY), None, seeds, torch_epochs))
    print_rows(rows, ours, "epochs")
    flops, bytes_ = work_per_model_epoch(cfg, data)
    compute, memory = flop_rate / flops, bandwidth / bytes_
    limit = min(compute, memory)
    print(f"  hardware estimate: {flops / 1e6:,.2f} MFLOP and {bytes_ / 1e6:,.2f} MB per model-epoch -> "
          f"{compute:,.0f} model-epochs/s at the matmul rate, {memory:,.0f} if every byte came from memory; "
          f"grokjax reaches {100 * ours / limit:.0f}% of the lower")
    if name == "s4":
        print(f"  the full default sweep (10000 seeds x 3000 epochs) at this rate: {3e7 / ours / 60:.1f} min + compile")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    for name, (seeds, epochs) in DEFAULT_SIZES.items():
        p.add_argument(f"--{name}", type=int, nargs=2, default=[seeds, epochs], metavar=("SEEDS", "EPOCHS"),
                       help=f"size of the {name.upper()} measurement; EPOCHS a multiple of {LOG_EVERY} "
                            f"(default: %(default)s)")
    p.add_argument("--loop-seeds", type=int, default=8, help="seeds trained by the one-at-a-time loop (default: 8)")
    p.add_argument("--torch-epochs", type=int, default=20,
                   help="epochs timed for PyTorch on S4 (a tenth of it on S5) (default: 20)")
    p.add_argument("--workers", type=int, default=0, help="CPU worker processes for grokjax (default: one per core)")
    a = p.parse_args()
    dev = jax.local_devices()
    print(f"device: {len(dev)} x {dev[0].device_kind} ({dev[0].platform}), {runner.default_workers()} cores, "
          f"jax {jax.__version__}")
    flop_rate, bandwidth = matmul_rate(), memory_bandwidth()
    print(f"measured: float32 matmul {flop_rate / 1e9:,.0f} GFLOP/s, memory bandwidth {bandwidth / 1e9:,.1f} GB/s")
    for name in a.configs:
        bench(name, *getattr(a, name), a, flop_rate, bandwidth)


if __name__ == "__main__":
    main()
