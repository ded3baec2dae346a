"""LLC throughput (model-chain-steps per second), side by side with a one-model loop and the sweep's training rate.

    python benchmarks/llc_throughput.py                 # default S4 config, published SGLD settings

What is measured, in one run on this machine:

- the vmapped estimator: `grokjax.analysis.llc`'s program (`llc_program`, `llc_inputs`) through the runner as
  `estimate_llc` runs it, `models_per_call` models per compiled call (models x chains vmapped; the width
  policy of `with_models_per_call`), in this process on every local device;
- on a one-device CPU, the same in --workers pinned worker processes (default one per core, whole calls dealt
  round-robin; the loss sent as the recipe `(sweep_loss, (sweep_cfg, False))`), with a bit-for-bit check
  against the in-process estimates;
- the same estimator one model per call, model after model (`models_per_call=1`), for --loop-models models;
- the sweep engine's training rate in model-epochs/s for the same config, as `throughput.py` measures it
  (`sweep_program` through the runner at the sweep's `seeds_per_call` policy, no disk), with as many workers as
  the pinned-worker LLC row (one process when there is none), training as many instances (--models x --chains seeds) for as long (--steps epochs). One
  SGLD step costs about one full-batch training step, so the LLC rate should be within 15% of the sweep's:
  the printout gives their ratio.

Every rate is timed from the moment every worker has compiled; the compile column is the compile alone.
The models are the default sweep config trained for --train-epochs epochs (up to 64 seeds, tiled up to
--models). Only real models (runs) count as work: the padding of a last, partial call costs time but is not
counted (use a multiple of the call width for a fair rate).
"""

import argparse
import dataclasses

import jax
import numpy as np

from grokjax.analysis.llc import LLCConfig, LLCResult, llc_inputs, llc_program, sweep_loss, with_models_per_call
from grokjax.run import runner
from grokjax.run.specs import SweepConfig
from grokjax.run.sweep import with_call_width
from grokjax.train import make_trainer, seed_keys
from throughput import engine_rate as sweep_engine_rate, runner_rate  # this directory's sweep benchmark

TARGET = (10_000, 4, 3000)  # models x chains x steps of the published full run
SWEEP_TARGET = 0.85  # the LLC's model-chain-steps/s should be at least this fraction of the sweep's model-epochs/s


def trained_params(sweep: SweepConfig, data, n_models: int, epochs: int):
    """`n_models` sets of parameters: up to 64 seeds of `sweep` trained for `epochs`, tiled."""
    trainer = make_trainer(data, sweep)
    width = min(n_models, 64)
    n_logs = epochs // sweep.schedule.log_every
    advance = lambda key: trainer.advance(trainer.init(key), sweep.hparams(), n_logs)[0].params
    params = jax.tree.map(np.asarray, jax.jit(jax.vmap(advance))(seed_keys(0, np.arange(width))))
    return jax.tree.map(lambda x: np.resize(x, (n_models, *x.shape[1:])), params)


def flops_per_model_chain_step(sweep: SweepConfig, data) -> float:
    """Matmul FLOPs of one full-batch SGLD step of MLP2: forward and backward of both layers."""
    n, m, d, h = data.vocab, data.n_train, sweep.model.embed_dim, sweep.model.hidden_dim
    return 3 * (2 * (2 * n * d * h) + 2 * m * h * n)


def llc_rate(loss, cfg: LLCConfig, params, keys, workers: int):
    """(model-chain-steps/s, compile seconds, workers, LLCResult) of the estimator through the runner."""
    rate, compile_s, workers, out = runner_rate((llc_program, (loss, cfg)), llc_inputs(params, keys, cfg),
                                                cfg.models_per_call, workers, cfg.chains * cfg.steps)
    return rate, compile_s, workers, LLCResult(*out)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", type=int, default=64, help="models estimated by the vmapped engine (default: 64)")
    p.add_argument("--loop-models", type=int, default=4, help="models estimated one at a time (default: 4)")
    p.add_argument("--steps", type=int, default=3000, help="SGLD steps per chain, and the sweep's epochs (default: 3000)")
    p.add_argument("--chains", type=int, default=4, help="chains per model (default: 4)")
    p.add_argument("--models-per-call", type=int, default=0, help="engine call width (default: the runner's policy)")
    p.add_argument("--train-epochs", type=int, default=1000, help="training of the benchmarked models (default: 1000)")
    p.add_argument("--workers", type=int, default=0,
                   help="on a one-device CPU, also time the engine (and the sweep) in this many pinned worker "
                        "processes (default: one per core; 1: skip)")
    a = p.parse_args()
    sweep = SweepConfig()
    data = sweep.problem.build()
    params = trained_params(sweep, data, a.models, a.train_epochs)
    keys = np.asarray(seed_keys(0, np.arange(a.models)))
    loss = sweep_loss(sweep)
    recipe = (sweep_loss, (sweep, False))  # what worker processes rebuild the same loss from
    cfg = LLCConfig(steps=a.steps, chains=a.chains, models_per_call=a.models_per_call)
    cfg = with_models_per_call(loss, cfg, params, keys)
    width = cfg.models_per_call
    one = dataclasses.replace(cfg, models_per_call=1)
    calls = -(-a.models // (width * len(jax.local_devices())))
    workers = runner.worker_count(a.workers, calls)
    print(f"device: {jax.devices()[0].device_kind} ({jax.devices()[0].platform}), {runner.default_workers()} cores, "
          f"jax {jax.__version__}")
    print(f"config: {' vs '.join(sweep.problem.groups)}, {data.n_train} training pairs, D=H={sweep.model.embed_dim}, "
          f"models trained {a.train_epochs} epochs; SGLD eps {cfg.eps:g}, nbeta {cfg.nbeta:g}, {cfg.chains} chains x "
          f"{cfg.steps} steps, full batch")

    engine_rate, c_engine, _, engine = llc_rate(loss, cfg, params, keys, 1)
    n_loop = min(a.loop_models, a.models)
    loop_rate, c_loop, _, loop = llc_rate(loss, one, jax.tree.map(lambda x: x[:n_loop], params), keys[:n_loop], 1)
    if workers > 1:
        pool_rate, c_pool, workers, pooled = llc_rate(recipe, cfg, params, keys, workers)
    same_llc = pool_rate if workers > 1 else engine_rate  # the LLC row with the sweep's number of workers
    best_llc = max(engine_rate, same_llc)

    # the sweep engine on the same config: as many instances (models x chains seeds) for as long (steps epochs)
    train = with_call_width(dataclasses.replace(sweep, n_seeds=a.models * cfg.chains,
                                                schedule=dataclasses.replace(sweep.schedule, length=cfg.steps)))
    sweep_rate, c_sweep, sweep_workers = sweep_engine_rate(train, workers)

    flops = flops_per_model_chain_step(sweep, data)
    print(f"{'':38s}{'rate':>12s}{'unit':>22s}{'compile s':>11s}{'models':>8s}")
    row = lambda label, rate, unit, comp, n: print(f"{label:38s}{rate:12,.0f}{unit:>22s}{comp:11.1f}{n:8d}")
    row(f"grokjax LLC (vmap, {width} models/call)", engine_rate, "model-chain-steps/s", c_engine, a.models)
    if workers > 1:
        row(f"grokjax LLC ({workers} pinned workers)", pool_rate, "model-chain-steps/s", c_pool, a.models)
    row("LLC plain loop, one model a call", loop_rate, "model-chain-steps/s", c_loop, n_loop)
    where = f"{sweep_workers} pinned workers" if sweep_workers > 1 else f"{len(jax.local_devices())} device(s)"
    row(f"grokjax sweep ({where}, {train.seeds_per_call}/call)", sweep_rate, "model-epochs/s", c_sweep, train.n_seeds)
    padded = calls * width * len(jax.local_devices()) - a.models
    if padded:
        print(f"(the LLC engine also ran {padded} padded copies in its last call, not counted; use a multiple of "
              f"{width * len(jax.local_devices())} models for a fair rate)")
    print(f"ratio LLC vmap / loop: {engine_rate / loop_rate:.2f}x")
    if workers > 1:
        print(f"ratio LLC {workers} workers / one process: {pool_rate / engine_rate:.2f}x; LLC identical bit for bit: "
              f"{np.array_equal(pooled.llc, engine.llc, equal_nan=True)}")
    verdict = "meets" if same_llc >= SWEEP_TARGET * sweep_rate else "misses"
    print(f"ratio LLC model-chain-steps/s / sweep model-epochs/s ({sweep_workers} worker{'s' * (sweep_workers > 1)} "
          f"each): {same_llc / sweep_rate:.2f} ({verdict} the target of at least {SWEEP_TARGET:.2f})")
    diff = np.abs(loop.llc / engine.llc[:n_loop] - 1).max()
    print(f"same models, loop vs engine LLC: largest relative difference {diff:.1e}")
    print(f"work: {flops / 1e6:.2f} MFLOP of matmuls per model-chain-step -> fastest LLC row at "
          f"{best_llc * flops / 1e9:.1f} GFLOP/s")
    total = np.prod(TARGET)
    print(f"projected: {TARGET[0]} models x {TARGET[1]} chains x {TARGET[2]} steps in "
          f"{total / best_llc / 60:.1f} min (loop: {total / loop_rate / 60:.1f} min)")


if __name__ == "__main__":
    main()
