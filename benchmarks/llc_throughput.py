"""LLC throughput (model-chain-steps per second) of the vmapped estimator, side by side with a one-model loop.

    python benchmarks/llc_throughput.py                 # default S4 config, published SGLD settings

Both estimate the LLC of the same trained models with the same code (`grokjax.llc.estimate_llc`): the engine
runs `models_per_call` models per compiled call (models x chains vmapped), the loop the same estimator
compiled for one model and called model after model. Compilation is timed apart. The models are the
default sweep config trained for --train-epochs epochs (a few calls' worth, tiled up to --models).
On a one-device CPU the engine is also timed in --workers pinned worker processes (default one per core,
whole calls dealt round-robin, `estimate_llc_in_workers`), from the moment every worker has compiled; its
compile column is the compile alone. Throughput counts only the --models real models: when --models is not a multiple of the call width, the
padding of the last call costs time but is not counted as work.
"""

import argparse
import dataclasses
import time

import jax
import numpy as np

from grokjax.execute import worker_count
from grokjax.llc import LLCConfig, estimate_llc, estimate_llc_in_workers, models_per_call, sweep_loss
from grokjax.sweep import SweepConfig, build_sweep_task
from grokjax.train import TrainConfig, make_trainer, seed_keys

TARGET = (10_000, 4, 3000)  # models x chains x steps of the published full run


def timed(fn):
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn())
    return out, time.perf_counter() - t0


def trained_params(task, cfg: TrainConfig, n_models: int, epochs: int):
    """`n_models` sets of parameters: up to 64 seeds trained for `epochs`, tiled."""
    trainer = make_trainer(task, cfg)
    width = min(n_models, 64)
    advance = lambda key: trainer.advance(trainer.init(key), cfg.hparams(), epochs // cfg.log_every)[0].params
    train = jax.jit(jax.vmap(advance))
    params = jax.tree.map(np.asarray, train(seed_keys(0, np.arange(width))))
    return trainer, jax.tree.map(lambda x: np.resize(x, (n_models, *x.shape[1:])), params)


def flops_per_model_chain_step(task, cfg: TrainConfig) -> float:
    """Matmul FLOPs of one full-batch SGLD step: forward and backward of both layers."""
    n, d, h, m = task.n, cfg.embed_dim, cfg.hidden_dim, task.n_train
    return 3 * (2 * (2 * n * d * h) + 2 * m * h * n)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", type=int, default=64, help="models estimated by the vmapped engine")
    p.add_argument("--loop-models", type=int, default=4, help="models estimated one at a time")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--models-per-call", type=int, default=0, help="engine call width (default: the device's)")
    p.add_argument("--train-epochs", type=int, default=1000, help="training of the benchmarked models")
    p.add_argument("--workers", type=int, default=0,
                   help="on a one-device CPU, also time the engine in this many pinned worker processes "
                        "(default: one per core; 1: skip)")
    a = p.parse_args()
    sweep = SweepConfig()
    task = build_sweep_task(sweep)
    trainer, params = trained_params(task, sweep.train, a.models, a.train_epochs)
    loss = sweep_loss(sweep)
    cfg = LLCConfig(steps=a.steps, chains=a.chains, models_per_call=a.models_per_call)
    cfg = dataclasses.replace(cfg, models_per_call=models_per_call(cfg, loss.bytes_per_chain))
    width = cfg.models_per_call
    one = dataclasses.replace(cfg, models_per_call=1)
    keys = seed_keys(0, np.arange(a.models))
    print(f"device: {jax.devices()[0].device_kind} ({jax.devices()[0].platform}), jax {jax.__version__}")
    print(f"config: {' vs '.join(sweep.groups)}, {task.n_train} training pairs, D=H={sweep.train.embed_dim}, "
          f"models trained {a.train_epochs} epochs; SGLD eps {cfg.eps:g}, nbeta {cfg.nbeta:g}, {cfg.chains} chains x "
          f"{cfg.steps} steps, full batch")

    first = lambda n: jax.tree.map(lambda x: x[:n], params)
    _, c_engine = timed(lambda: estimate_llc(loss, first(width), keys[:width], cfg).llc)  # compile and one call
    engine, t_engine = timed(lambda: estimate_llc(loss, params, keys, cfg).llc)
    calls = -(-a.models // width)
    padded = calls * width - a.models
    engine_rate = a.models * cfg.chains * cfg.steps / t_engine  # real models only; padding is overhead
    _, c_loop = timed(lambda: estimate_llc(loss, first(1), keys[:1], one).llc)
    loop, t_loop = timed(lambda: estimate_llc(loss, first(a.loop_models), keys[:a.loop_models], one).llc)
    loop_rate = a.loop_models * cfg.chains * cfg.steps / t_loop
    workers = worker_count(a.workers, calls)
    if workers > 1:  # timed from the moment every worker has compiled, like the sweep benchmark
        marks = {}
        on_compiled = lambda seconds: marks.update(seconds=seconds, at=time.perf_counter())
        pooled = estimate_llc_in_workers(loss, params, keys, cfg, make_loss=sweep_loss, make_loss_args=(sweep,),
                                         workers=workers, on_compiled=on_compiled).llc
        pool_rate = a.models * cfg.chains * cfg.steps / (time.perf_counter() - marks["at"])

    flops = flops_per_model_chain_step(task, sweep.train)
    print(f"{'':34s}{'model-chain-steps/s':>21s}{'compile+1 call s':>18s}{'models':>8s}")
    engine_name = f"grokjax (vmap, {width} models/call)"
    print(f"{engine_name:34s}{engine_rate:21,.0f}{c_engine:18.1f}{a.models:8d}")
    if workers > 1:
        print(f"{f'grokjax ({workers} pinned workers)':34s}{pool_rate:21,.0f}{marks['seconds']:18.1f}{a.models:8d}")
    print(f"{'plain loop, one model a call':34s}{loop_rate:21,.0f}{c_loop:18.1f}{a.loop_models:8d}")
    if padded:
        print(f"(the engine also ran {padded} padded copies in its last call, not counted; use a multiple of "
              f"{width} models for a fair rate)")
    print(f"ratio grokjax / loop: {engine_rate / loop_rate:.2f}x")
    if workers > 1:
        print(f"ratio {workers} workers / one process: {pool_rate / engine_rate:.2f}x; LLC identical bit for bit: "
              f"{np.array_equal(pooled, engine, equal_nan=True)}")
    diff = np.abs(loop / engine[: a.loop_models] - 1).max()
    print(f"same models, loop vs engine LLC: largest relative difference {diff:.1e}")
    print(f"work: {flops / 1e6:.2f} MFLOP of matmuls per model-chain-step -> engine at "
          f"{engine_rate * flops / 1e9:.1f} GFLOP/s")
    total = np.prod(TARGET)
    print(f"projected: {TARGET[0]} models x {TARGET[1]} chains x {TARGET[2]} steps in "
          f"{total / max(engine_rate, pool_rate if workers > 1 else 0) / 60:.1f} min (loop: {total / loop_rate / 60:.1f} min)")


if __name__ == "__main__":
    main()
