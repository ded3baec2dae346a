"""Train many seeds on an ambiguous training set and count which group each one grokked.

Defaults reproduce the published run: S(4) vs A(4) x Z(2) on their full
intersection, MLP2 with D = H = 32, Adam (lr 1e-2, betas 0.9/0.98, L2 weight
decay 2e-5 on weights), 3000 full-batch epochs.

    python experiments/sweep_intersection.py --n-seeds 10000
    python experiments/sweep_intersection.py --preset z48 --n-seeds 1000   # Z48xZ2 vs twZ48, the authors' MLP3
    python experiments/sweep_intersection.py --preset s5 --n-seeds 1000    # S5 vs A5xZ2, D = H = 128
    python experiments/sweep_intersection.py --problem modular --p 97 --op + --split thread --filter ema --loss stablemax
"""

import argparse
import time

from grokjax.analysis.outcomes import CI_METHODS
from grokjax.cli import (PRESETS, add_config_options, apply_preset, config_from_args, config_options, grid_options,
                         run_cli)
from grokjax.errors import UserError
from grokjax.run.runner import default_cache_dir, start_distributed
from grokjax.run.specs import SweepConfig
from grokjax.run.sweep import read_resumable_config, run_sweep


def parse_args(argv=None):
    d = SweepConfig()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=tuple(PRESETS), default=None,
                   help="a published sweep's settings as defaults: s4 (the defaults), s5 (S5 vs A5xZ2, D = H = 128), "
                        "z48 (Z48xZ2 vs twZ48, MLP3 embed 32 hidden 64, weight decay 2e-4, 2000 epochs)")
    add_config_options(p)
    g = p.add_argument_group("seeds, outcome and output")
    g.add_argument("--n-seeds", type=int, default=d.n_seeds, help="number of init seeds (default: %(default)s)")
    g.add_argument("--seed", type=int, default=d.seed, help="base init seed; seed i uses fold_in(seed, i) (default: %(default)s)")
    g.add_argument("--seeds-per-call", type=int, default=d.seeds_per_call,
                   help="seeds in one compiled call; fixes the numerics, recorded with the results "
                        "(default: 8 on CPU, what fits a quarter of an accelerator's memory)")
    g.add_argument("--chunk-size", type=int, default=None,
                   help="runs written per chunk file, rounded up to whole calls; never changes the numbers "
                        "(default: what fits an eighth of the free memory, at most 1024)")
    g.add_argument("--workers", type=int, default=0,
                   help="CPU worker processes; never changes the numbers (default: one per core on a CPU)")
    g.add_argument("--grok-threshold", type=float, default=d.grok_threshold,
                   help="full-table accuracy that counts as grokked (default: %(default)s)")
    g.add_argument("--ci", choices=CI_METHODS, default=d.ci_method, help="confidence interval method (default: %(default)s)")
    g.add_argument("--out", default=None, help="results directory (default: results/sweep-YYYYmmdd-HHMMSS)")
    mode = g.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue an interrupted sweep in --out")
    mode.add_argument("--overwrite", action="store_true",
                      help="replace an existing results directory; the old results stay until the new ones are complete")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    cache = g.add_mutually_exclusive_group()
    cache.add_argument("--compile-cache", default=default_cache_dir(), metavar="DIR",
                       help="keep compiled programs here so the next run of a config skips compilation "
                            "(default: $GROKJAX_CACHE_DIR or %(default)s)")
    cache.add_argument("--no-compile-cache", action="store_true", help="compile afresh, keep nothing")
    g = p.add_argument_group("multi-host (every process runs this same command; see the README)")
    g.add_argument("--distributed", action="store_true",
                   help="join a multi-host run through jax.distributed; without the options below, the "
                        "coordinator and process ids come from the cluster (SLURM, Open MPI, ...)")
    g.add_argument("--coordinator", default=None, metavar="HOST:PORT", help="address of process 0")
    g.add_argument("--num-processes", type=int, default=None, help="number of processes")
    g.add_argument("--process-id", type=int, default=None, help="this process's index, 0 .. num-processes - 1")
    apply_preset(p, argv)
    args = p.parse_args(argv)
    if args.resume and args.preset:
        p.error("--resume takes its settings from the saved config: leave out --preset")
    if args.resume and args.out is None:
        p.error("--resume needs --out: name the results directory to continue")
    if args.resume:  # the saved config supplies every option not given again
        c = read_resumable_config(args.out)  # an interrupted --overwrite's new sweep, else the directory's
        p.set_defaults(**config_options(c), n_seeds=c.n_seeds, seed=c.seed, seeds_per_call=c.seeds_per_call,
                       grok_threshold=c.grok_threshold, ci=c.ci_method)
        args = p.parse_args(argv)
    return args


def main(argv=None):
    a = parse_args(argv)
    cfg = config_from_args(a, seed=a.seed, n_seeds=a.n_seeds, grok_threshold=a.grok_threshold, ci_method=a.ci,
                           seeds_per_call=a.seeds_per_call, **grid_options(a))
    if a.distributed or a.coordinator:
        start_distributed(a.coordinator, a.num_processes, a.process_id)
    if a.out is None and (a.distributed or a.coordinator):
        raise UserError("A multi-host sweep needs --out: a directory on a filesystem every process shares.")
    out = a.out or time.strftime("results/sweep-%Y%m%d-%H%M%S")
    run_sweep(cfg, out, chunk_size=a.chunk_size, resume=a.resume, overwrite=a.overwrite, progress=not a.no_progress,
              workers=a.workers, cache_dir=None if a.no_compile_cache else a.compile_cache)


if __name__ == "__main__":
    run_cli(main, interrupted="Interrupted before anything was written.")  # later, run_sweep names what was kept
