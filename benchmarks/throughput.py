"""Training throughput of the sweep engine, side by side with a one-seed-at-a-time loop.

    python benchmarks/throughput.py              # default config, 1000 seeds, metrics every 10 epochs

Both train the same seeds of the same config with the same pure training
function; the engine vmaps it over `seeds_per_call` seeds per compiled call (as
a sweep does, without the disk), the loop jit-compiles it for one seed and
calls it seed after seed. Compilation is timed apart. The hardware estimate
divides the machine's measured float32 matmul rate by the matmul FLOPs of one
model-epoch (forward and backward of both layers, plus the logged metrics).
"""

import argparse
import time

import jax
import numpy as np

from grokjax.sweep import SweepConfig, build_sweep_task, default_seeds_per_call
from grokjax.train import TrainConfig, make_trainer, seed_keys


def timed(fn):
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn())
    return out, time.perf_counter() - t0


def matmul_rate(n=2048, reps=10) -> float:
    """Measured float32 matmul FLOP/s of the default device."""
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n))
    f = jax.jit(lambda x: x @ x)
    jax.block_until_ready(f(a))
    _, dt = timed(lambda: [f(a) for _ in range(reps)])
    return 2 * n**3 * reps / dt


def flops_per_model_epoch(task, cfg: TrainConfig) -> float:
    """Matmul FLOPs of one full-batch epoch, plus the full-table metrics amortised over log_every."""
    n, d, h, m = task.n, cfg.embed_dim, cfg.hidden_dim, task.n_train
    tables = 2 * (2 * n * d * h)  # E_l W_l, E_r W_r
    unembed = 2 * m * h * n
    train = 3 * (tables + unembed)  # forward, and two products each in the backward pass
    metrics = (tables + 2 * n * n * h * n) / cfg.log_every
    return train + metrics


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-seeds", type=int, default=1000)
    p.add_argument("--loop-seeds", type=int, default=8, help="seeds trained by the one-at-a-time loop")
    p.add_argument("--epochs", type=int, default=3000)
    p.add_argument("--log-every", type=int, default=10)
    a = p.parse_args()
    cfg = SweepConfig(n_seeds=a.n_seeds, train=TrainConfig(epochs=a.epochs, log_every=a.log_every))
    task = build_sweep_task(cfg)
    trainer = make_trainer(task, cfg.train)
    hp, width = cfg.train.hparams(), default_seeds_per_call(task, cfg.train)
    print(f"device: {jax.devices()[0].device_kind} ({jax.devices()[0].platform}), jax {jax.__version__}")
    print(f"config: {' vs '.join(cfg.groups)}, {task.n_train} training pairs, D=H={cfg.train.embed_dim}, "
          f"{a.epochs} epochs, metrics every {a.log_every}")

    engine = jax.jit(jax.vmap(trainer.train, in_axes=(0, None)))
    compiled, c_engine = timed(lambda: engine.lower(seed_keys(0, np.arange(width)), hp).compile())
    starts = range(0, a.n_seeds, width)
    outs, t_engine = timed(lambda: [compiled(seed_keys(0, np.arange(s, s + width)), hp) for s in starts])
    engine_rate = len(starts) * width * a.epochs / t_engine
    engine_loss = np.concatenate([np.asarray(o[1].train_loss) for o in outs])

    single = jax.jit(trainer.train)
    one, c_loop = timed(lambda: single.lower(seed_keys(0, [0])[0], hp).compile())
    loop_outs, t_loop = timed(lambda: [one(seed_keys(0, [i])[0], hp) for i in range(a.loop_seeds)])
    loop_rate = a.loop_seeds * a.epochs / t_loop
    loop_loss = np.stack([np.asarray(o[1].train_loss) for o in loop_outs])
    # Programs of different width round differently in the last bit; compare after the first log interval,
    # before training's sensitivity to initial conditions amplifies that.
    first_diff = np.abs(loop_loss[:, 1] / engine_loss[: a.loop_seeds, 1] - 1).max()
    last_diff = np.abs(loop_loss[:, -1] / engine_loss[: a.loop_seeds, -1] - 1).max()

    flops = flops_per_model_epoch(task, cfg.train)
    rate = matmul_rate()
    limit = rate / flops
    print(f"{'':28s}{'model-epochs/s':>16s}{'compile s':>11s}{'seeds':>7s}")
    print(f"{'grokjax (vmap, ' + str(width) + '/call)':28s}{engine_rate:16,.0f}{c_engine:11.1f}{len(starts) * width:7d}")
    print(f"{'plain loop, one seed a call':28s}{loop_rate:16,.0f}{c_loop:11.1f}{a.loop_seeds:7d}")
    print(f"ratio grokjax / loop: {engine_rate / loop_rate:.2f}x")
    print(f"same seeds, loop vs engine train loss: relative difference {first_diff:.1e} at epoch {a.log_every}, "
          f"{last_diff:.1e} at epoch {a.epochs}")
    print(f"hardware estimate: {flops / 1e6:.2f} MFLOP per model-epoch, measured matmul rate {rate / 1e9:.0f} GFLOP/s "
          f"-> limit {limit:,.0f} model-epochs/s; grokjax reaches {100 * engine_rate / limit:.0f}%")
    print(f"full default sweep estimate: 10000 seeds x 3000 epochs in {10000 * 3000 / engine_rate / 60:.1f} min")


if __name__ == "__main__":
    main()
