"""Training throughput of the vmapped transformer, side by side with a one-seed JAX loop and a PyTorch reference.

    python benchmarks/transformer_throughput.py             # x*y mod 97, Power et al.'s transformer, batches of 512
    pip install torch                                       # optional: adds the PyTorch row

What is measured, in one run on this machine, in model-steps per second (one transformer, one AdamW step on a
minibatch; the full-table validation accuracy every `--log-every` steps included):

- grokjax as a sweep runs it (the Grokfast preset's task and schedule, `grokjax.run.challenge.grokfast_config`, with
  Power et al.'s transformer and AdamW, the model and optimizer the PyTorch reference implements): the sweep's
  program through the runner at the sweep's call width, on every local device or in worker processes pinned one
  per core, without the disk (`throughput.engine_rate`);
- a plain loop that jit-compiles the same pure `Trainer.train` for one seed and calls it seed after seed
  (`throughput.loop_rate`);
- the PyTorch reference (`torch_transformer.py`: all seeds as one instanced model), if torch is installed;
- their ratios, and the hardware limit from the FLOPs of one model-step against the measured matmul rate.
Compilation is timed apart and excluded from the rates.
"""

import argparse
import dataclasses
import importlib.util

import jax

from grokjax.models import TransformerSpec
from grokjax.run import runner
from grokjax.run.challenge import grokfast_config
from grokjax.run.sweep import with_call_width
from throughput import engine_rate, loop_rate, matmul_rate, print_rows


def flops_per_step(cfg, data) -> float:
    """Matmul FLOPs of one training step (forward and a backward of twice its cost) on a minibatch, plus the
    full-table forward amortised over the log interval. Per token and layer: the q, k, v, o projections (4 d^2
    multiply-adds) and the MLP (2 d d_mlp); attention over 4 positions and the unembedding (d x classes at each
    of the 4 positions, as the model computes it) besides."""
    m, seq = cfg.model, 4
    d, d_mlp = m.d_model, m.d_mlp or 4 * m.d_model
    per_example = 2 * seq * (m.n_layers * (4 * d * d + 2 * d * d_mlp + 2 * seq * d) + d * data.n_classes)
    return 3 * per_example * cfg.schedule.batch_size + per_example * data.n_points / cfg.schedule.log_every


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=16, help="seeds trained by grokjax and PyTorch (default: 16)")
    p.add_argument("--steps", type=int, default=40, help="optimizer steps timed (default: 40)")
    p.add_argument("--log-every", type=int, default=20, help="steps between full-table accuracies (default: 20)")
    p.add_argument("--loop-seeds", type=int, default=4, help="seeds trained by the one-at-a-time loop (default: 4)")
    p.add_argument("--torch-steps", type=int, default=None, help="steps timed for PyTorch (default: --steps)")
    p.add_argument("--workers", type=int, default=0, help="CPU worker processes for grokjax (default: one per core)")
    a = p.parse_args()
    a.torch_steps = a.torch_steps or a.steps
    dev = jax.local_devices()
    print(f"device: {len(dev)} x {dev[0].device_kind} ({dev[0].platform}), {runner.default_workers()} cores, "
          f"jax {jax.__version__}")
    flop_rate = matmul_rate()
    base = grokfast_config(a.seeds, a.steps, a.log_every)
    cfg = with_call_width(dataclasses.replace(base, model=TransformerSpec(),
                                              optimizer=dataclasses.replace(base.optimizer, kind="adamw")))
    data = cfg.problem.build()
    print(f"measured: float32 matmul {flop_rate / 1e9:,.0f} GFLOP/s\n{cfg.problem.op} mod {cfg.problem.p}: "
          f"{data.n_train} training points, transformer {cfg.model}, batches of {cfg.schedule.batch_size}, "
          f"validation every {a.log_every} steps, {cfg.seeds_per_call} seeds per call")
    ours, c_ours, workers = engine_rate(cfg, a.workers)
    rows = [(f"grokjax ({workers} worker{'s' * (workers > 1)})", ours, c_ours, a.seeds, a.steps)]
    loop_cfg = dataclasses.replace(cfg, n_seeds=a.loop_seeds)
    loop, c_loop = loop_rate(loop_cfg, data, a.loop_seeds)
    rows.append(("plain JAX loop, one seed a call", loop, c_loop, a.loop_seeds, a.steps))
    if importlib.util.find_spec("torch") is None:
        rows.append(("PyTorch instanced (skipped: not installed)", None, None, a.seeds, a.torch_steps))
    else:
        import torch
        import torch_transformer

        rows.append((f"PyTorch {torch.__version__} instanced, AdamW",
                     torch_transformer.rate(data, a.seeds, a.torch_steps, cfg.schedule.batch_size, a.log_every),
                     None, a.seeds, a.torch_steps))
    print_rows(rows, ours, "steps", digits=1)
    flops = flops_per_step(cfg, data)
    limit = flop_rate / flops
    print(f"  hardware estimate: {flops / 1e9:,.2f} GFLOP per model-step -> {limit:,.1f} model-steps/s at the "
          f"matmul rate; grokjax reaches {100 * ours / limit:.0f}% of it")


if __name__ == "__main__":
    main()
