"""Perturbation-sweep throughput (model-epochs per second), side by side with the sweep's training rate.

    python benchmarks/perturb_throughput.py            # the study's scale sweep shape: 3 runs x 17 scales x 20 copies

What is measured, in one run on this machine: the perturbation program (`grokjax.analysis.perturb.perturb_program`)
through the runner as `experiments/perturb.py` runs it (copies made call by call by `grokjax.run.perturb.Copies`,
the sweep's call width, --workers pinned processes on a one-device CPU), perturbing the default config's runs at
their initialization with the published scales and training every copy --epochs epochs with a fresh optimizer;
and the sweep engine training as many runs for as long (`throughput.engine_rate`). A copy's epoch costs what a
run's epoch does, so the two rates should be the same; the printout gives their ratio. Rates are timed from the
moment every worker has compiled; the compile column is the compile alone.
"""

import argparse
import dataclasses

import jax
import numpy as np

from grokjax.analysis.perturb import PUBLISHED_SCALES, copy_keys, perturb_program
from grokjax.run import runner
from grokjax.run.perturb import Copies
from grokjax.run.specs import SweepConfig
from grokjax.run.sweep import run_inputs, with_call_width
from grokjax.train import make_trainer, seed_keys
from throughput import engine_rate, runner_rate  # this directory's sweep benchmark


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3, help="perturbed runs (default: 3)")
    p.add_argument("--copies", type=int, default=20, help="copies per run and scale (default: 20)")
    p.add_argument("--epochs", type=int, default=1000, help="epochs every copy trains (default: 1000)")
    p.add_argument("--workers", type=int, default=0, help="pinned worker processes (default: one per core)")
    a = p.parse_args()
    base = SweepConfig()
    cfg = with_call_width(dataclasses.replace(base, n_seeds=a.runs,
                                              schedule=dataclasses.replace(base.schedule, length=a.epochs)))
    trainer = make_trainer(cfg.problem.build(), cfg)
    runs = np.arange(a.runs)
    states = jax.tree.map(np.asarray, jax.vmap(trainer.init)(seed_keys(cfg.seed, runs)))
    scales = np.asarray(PUBLISHED_SCALES)
    inputs = Copies(states, run_inputs(cfg, runs)[1], copy_keys(0, runs, 0, a.copies), scales, states.params)
    workers = runner.worker_count(a.workers, -(-len(inputs) // cfg.seeds_per_call))
    program = (perturb_program, (cfg, cfg.schedule.n_logs, True, "sphere"))
    print(f"device: {jax.devices()[0].device_kind} ({jax.devices()[0].platform}), {runner.default_workers()} cores, "
          f"jax {jax.__version__}; {len(inputs)} copies ({a.runs} runs x {len(scales)} scales x {a.copies}) x "
          f"{a.epochs} epochs, {cfg.seeds_per_call} per call")
    rate, compile_s, workers, _ = runner_rate(program, inputs, cfg.seeds_per_call, workers, a.epochs)
    sweep_cfg = dataclasses.replace(cfg, n_seeds=len(inputs))
    sweep_rate, sweep_compile, sweep_workers = engine_rate(sweep_cfg, workers)
    print(f"{'':44s}{'model-epochs/s':>16s}{'compile s':>11s}")
    print(f"{f'perturbation copies ({workers} workers)':44s}{rate:16,.0f}{compile_s:11.1f}")
    print(f"{f'sweep runs ({sweep_workers} workers)':44s}{sweep_rate:16,.0f}{sweep_compile:11.1f}")
    print(f"ratio perturbation / sweep: {rate / sweep_rate:.2f}")


if __name__ == "__main__":
    main()
