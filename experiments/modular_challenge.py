"""The "a + b mod 97" grokking challenge: every accelerator over its hyperparameters and many seeds, and a
leaderboard of steps to grok with error bars.

    python experiments/modular_challenge.py --out results/challenge                       # 64 seeds per setting
    python experiments/modular_challenge.py --methods baseline weight_decay --n-seeds 16 --steps 1000
    python experiments/modular_challenge.py --preset grokfast --n-seeds 8 --steps 50000   # the Grokfast headline

Methods (grokjax.run.challenge.METHODS) over the base config (AdamW lr 3e-3, betas 0.9/0.98, no weight decay; the
StableMax paper's one-hot MLP, 2 x 200, no biases; batches of min(512, half the training set) on x op y mod p with
the challenge generator's split):
baseline; weight_decay (decoupled, 0.1 and 1.0); grokfast_ema (alpha 0.98, lambda 2 and 5); grokfast_ma (window 100,
lambda 5); stablemax (the loss); orthograd. Each setting is a resumable sweep in OUT/<method>/<k>. Per method, the
best setting's fraction of runs reaching 95% validation accuracy within the budget (Wilson 95% interval), its median
steps to 95% and 99% (a run that never got there counts at the budget; percentile bootstrap interval), and its
speed-up over the baseline (bootstrap interval). Writes OUT/leaderboard.json and OUT/leaderboard.npz.

--preset grokfast runs the Grokfast paper's comparison instead: x*y mod 97 on a random half, Power et al.'s
transformer, AdamW lr 1e-3 (betas 0.9/0.98), batches of 512, 10 warmup steps; baseline (no filter, no weight decay),
grokfast_ma (window 100, lambda 5, weight decay 0.01) and grokfast_ema (alpha 0.98, lambda 2, weight decay 0.005),
printed beside the paper's steps to 95% (39,890, 790 and 910, one run each).
"""

import argparse
import dataclasses
import time

from grokjax.cli import add_run_options, run_cli
from grokjax.problems.modular import SPLITS, ModularProblem
from grokjax.run import runner
from grokjax.run.challenge import (GROKFAST_METHODS, GROKFAST_PUBLISHED, METHODS, base_config, grokfast_config,
                                   run_challenge)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=("grokfast",), default=None, help="the Grokfast paper's comparison (see above)")
    p.add_argument("--methods", nargs="+", default=None, metavar="METHOD",
                   help=f"some of {', '.join(METHODS)}, or of {', '.join(GROKFAST_METHODS)} with --preset grokfast "
                        f"(default: all)")
    p.add_argument("--p", type=int, default=ModularProblem.p, help="modulus (default: %(default)s)")
    p.add_argument("--op", default=ModularProblem.op, help="+ - * / or a polynomial in x and y (default: %(default)s)")
    p.add_argument("--split", choices=SPLITS, default="thread",
                   help="the challenge generator's split, or a random half (default: thread)")
    p.add_argument("--steps", type=int, default=None,
                   help="budget: optimizer steps per run (default: 3000; 50000 with --preset)")
    p.add_argument("--log-every", type=int, default=None,
                   help="steps between validation accuracies (default: 50; 10 with --preset)")
    p.add_argument("--n-seeds", type=int, default=64, help="seeds per setting (default: 64)")
    p.add_argument("--seeds-per-call", type=int, default=0,
                   help="runs per compiled call (default: 0, the runner's choice by memory; a call is padded to it, "
                        "so with few seeds a smaller width saves time; a run's numbers depend on it)")
    add_run_options(p, "replace an earlier leaderboard and its sweeps", compile_cache=True)
    p.add_argument("--out", default=None, help="output directory (default: results/challenge-YYYYmmdd-HHMMSS)")
    a = p.parse_args(argv)
    if a.preset:
        base, table, published = grokfast_config(a.n_seeds, a.steps or 50000, a.log_every or 10, a.p), GROKFAST_METHODS, \
            GROKFAST_PUBLISHED
    else:
        base, table, published = base_config(a.p, a.op, a.split, a.steps or 3000, a.log_every or 50, a.n_seeds), METHODS, None
    base = dataclasses.replace(base, seeds_per_call=a.seeds_per_call)
    run_challenge(base, a.out or time.strftime("results/challenge-%Y%m%d-%H%M%S"), tuple(a.methods or table),
                  a.workers, a.overwrite, not a.no_progress, None if a.no_compile_cache else runner.default_cache_dir(),
                  table=table, published=published)


if __name__ == "__main__":
    run_cli(main)
