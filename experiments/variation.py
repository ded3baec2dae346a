"""Total variation of the function over training, for every run of a finished sweep, from its kept checkpoints.

    python experiments/sweep_intersection.py --keep-every 10 --out RESULTS_DIR   # a sweep that keeps checkpoints
    python experiments/variation.py RESULTS_DIR                  # variation.npz and variation.json beside the results
    python experiments/variation.py RESULTS_DIR --window 0 1     # the whole of training instead of its last third

Between consecutive checkpoints t, t+1, on the training points, the full table and the test points (the table
minus the training points): l2 = mean_x ||f_{t+1}(x) - f_t(x)||_2, kl = mean_x KL(softmax f_t(x) || softmax
f_{t+1}(x)), flip = the fraction of points whose argmax changed, and |L_{t+1} - L_t| for the mean cross-entropy L
(on the table and test points one value per group). Each is saved per interval and summed (and averaged) over the
intervals inside the window. Then `python experiments/figures.py RESULTS_DIR` also draws their histograms by outcome.
"""

import argparse

from grokjax.analysis.variation import DEFAULT_WINDOW
from grokjax.cli import add_run_options, run_cli
from grokjax.run.variation import run_variation


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results_dir", help="directory of a finished sweep run with --keep-every")
    p.add_argument("--window", type=float, nargs=2, default=list(DEFAULT_WINDOW), metavar=("START", "END"),
                   help="fractions of training to sum over (default: the last third, 0.667 1)")
    p.add_argument("--first", type=int, default=None, metavar="N",
                   help="only the first N runs, the rows of seeds.npz (default: all)")
    p.add_argument("--runs-per-call", type=int, default=None,
                   help="runs in one compiled call (default: the sweep's call width); lower it if a call does not "
                        "fit memory, every run's checkpoints being in it")
    add_run_options(p, "replace results saved by an earlier run")
    return p.parse_args(argv)


def main(argv=None):
    run_variation(parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
