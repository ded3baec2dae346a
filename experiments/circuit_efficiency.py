"""Circuit efficiency (Varma et al.): the parameter norm of the memorizing and the generalizing circuit against the
training-set size D, and the critical size D_crit where they cross, with intervals over seeds.

    python experiments/circuit_efficiency.py --out results/efficiency                  # x+y mod 31, 8 sizes
    python experiments/circuit_efficiency.py --p 23 --fraction 0.2 0.4 0.6 --weight-decay 0.3 1 --n-seeds 8

Two sweeps over the same nested training fractions (`--fraction` takes the list; every size x weight decay x seed
is one program, full batch): the problem's true labels in OUT/generalizing, its labels permuted by
`--random-label-seed` in OUT/memorizing. At the end of training, per run: parameter norm, train loss, mean
correct-class logit margin and held-out accuracy. Per weight decay and size: the memorizing runs' mean norm, the
generalizing runs' mean norm (the true-label runs whose held-out accuracy reached `--threshold`), the fraction of
true-label runs that generalized (Wilson interval), and D_crit, the smallest size where the memorizing norm
reaches the generalizing one, with a bootstrap interval over seeds. Writes OUT/efficiency.json and .npz; run the
same command again to resume; `python experiments/figures.py OUT` draws the curves.

    python experiments/circuit_efficiency.py --ungrok 0.8 --fraction 0.2 0.3 0.4 0.6 --continue-epochs 3000

Ungrokking instead: train at the large fraction (OUT/large), then continue every run on each smaller nested
fraction of `--fraction` and on the large one (`--fresh-optimizer`, or the optimizer state carried over), all in
one program; per size and weight decay the fraction of the runs that had generalized (held-out accuracy at least
`--threshold`) and no longer have at the end, with Wilson intervals. Writes OUT/ungrok.json and .npz.

    python experiments/circuit_efficiency.py --semi-grok --fraction 0.25 0.3 0.35 --epochs 20000

Semi-grokking instead: one sweep from scratch over the fractions; per size the fraction of runs that semi-grokked
(fitted, then held-out accuracy rose by at least 0.1 and settled between 0.2 and 0.9, moving by at most 0.05 over
the last fifth of training) and of those that generalized, with Wilson intervals. Writes OUT/semigrok.json, .npz.
"""

import argparse
import time

from grokjax.cli import add_config_options, add_run_options, config_from_args, grid_options, run_cli
from grokjax.run import runner
from grokjax.run.efficiency import run_efficiency, run_semigrok, run_ungrok

DEFAULTS = dict(problem="modular", p=31, op="+", model="onehot_mlp", optimizer="adamw", lr=[1e-3],
                weight_decay=[1.0], epochs=3000, log_every=100,
                fraction=[0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.8])
"""x + y mod 31, the one-hot MLP (2 x 200, no biases), AdamW lr 1e-3 with decoupled weight decay 1, full batch."""


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_options(p)
    p.set_defaults(**DEFAULTS)
    p.add_argument("--random-label-seed", type=int, default=0, help="seed of the memorizing circuit's labels (default: 0)")
    p.add_argument("--threshold", type=float, default=0.95,
                   help="held-out accuracy from which a true-label run counts as generalizing (default: 0.95)")
    study = p.add_mutually_exclusive_group()
    study.add_argument("--semi-grok", action="store_true", help="study semi-grokking over the --fraction sizes")
    study.add_argument("--ungrok", type=float, default=None, metavar="LARGE",
                   help="study ungrokking: train at this fraction, then continue on each --fraction")
    p.add_argument("--continue-epochs", type=int, default=3000, help="ungrokking: epochs of the continuation "
                                                                        "(default: 3000)")
    p.add_argument("--fresh-optimizer", action="store_true", help="ungrokking: restart the optimizer state")
    p.add_argument("--n-seeds", type=int, default=16, help="seeds per size and weight decay (default: 16)")
    p.add_argument("--seed", type=int, default=0, help="base seed of the inits (default: 0)")
    add_run_options(p, "replace an earlier summary and its sweeps")
    p.add_argument("--out", default=None, help="output directory (default: results/efficiency-YYYYmmdd-HHMMSS)")
    a = p.parse_args(argv)
    grids = grid_options(a)
    fractions = grids.pop("fraction_grid", tuple(a.fraction))
    base = config_from_args(a, seed=a.seed, n_seeds=a.n_seeds, **grids)
    out = a.out or time.strftime("results/efficiency-%Y%m%d-%H%M%S")
    if a.semi_grok:
        run_semigrok(base, fractions, out, a.threshold, a.workers, a.overwrite, not a.no_progress,
                     runner.default_cache_dir())
    elif a.ungrok is not None:
        run_ungrok(base, fractions, a.ungrok, out, a.continue_epochs, a.fresh_optimizer, a.threshold, a.workers,
                   a.overwrite, not a.no_progress, runner.default_cache_dir())
    else:
        run_efficiency(base, fractions, out, a.random_label_seed, a.threshold, a.workers, a.overwrite,
                       not a.no_progress, runner.default_cache_dir())


if __name__ == "__main__":
    run_cli(main)
