"""Training Jacobians J = dθ_T/dθ_0 (of MLP2 by default; any --model) and their spectra against the number of epochs T.

Defaults are the published setting: D = H = 32 with unembedding bias, Adam (lr
1e-2, betas 0.9/0.98) with L2 weight decay 2e-4 on weights (the Jacobian's
published setting; the sweep's default is 2e-5), full batch, on two
training sets: a 60% iid sample of S(4)'s table (`iid`) and the S(4) vs
A(4) x Z(2) intersection (`intersection`). For every seed and every T, the SVD of
J gives the singular values, the cosines between matching singular vectors,
the bulk, the largest singular value and log |det J|; they are saved against T
with the metrics of θ_T, and the figures are drawn from the saved arrays.

    python experiments/training_jacobian.py                          # both settings, T = 10 30 100 200
    python experiments/training_jacobian.py --settings iid --epochs 100 1000 3000
    python experiments/training_jacobian.py --groups 'S(5)' 'times(A(5),Z(2))' \\
        --embed-dim 128 --hidden-dim 128 --top-k 50                   # too large for a dense J
"""

import argparse

from grokjax.analysis import jacobian as jac
from grokjax.cli import add_config_options, add_run_options, run_cli
from grokjax.run.jacobian import DEFAULT_EPOCHS, PUBLISHED_WEIGHT_DECAY, SETTINGS, run_jacobian


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_options(p, grid=False, weight_decay=PUBLISHED_WEIGHT_DECAY, schedule=False)
    p.set_defaults(groups=None)  # the published --settings unless --groups names one custom training set
    p.add_argument("--settings", nargs="+", choices=tuple(SETTINGS), default=list(SETTINGS),
                   help="published training sets to run, each with the problem options' other values "
                        "(default: %(default)s); --groups runs one custom training set instead")
    g = p.add_argument_group("Jacobian")
    g.add_argument("--epochs", type=int, nargs="+", default=list(DEFAULT_EPOCHS), metavar="T",
                   help="epochs T at which to take J, increasing; one pass computes all (default: %(default)s)")
    g.add_argument("--n-seeds", type=int, default=1, help="init seeds per training set (default: %(default)s)")
    g.add_argument("--seed", type=int, default=0,
                   help="base init seed; seed i uses fold_in(seed, i) (default: %(default)s)")
    g.add_argument("--sigma-tol", type=float, default=jac.SIGMA_TOL,
                   help="bulk: |σ - 1| below this (default: %(default)s)")
    g.add_argument("--cos-tol", type=float, default=jac.COS_TOL,
                   help="bulk: cosine of left and right singular vectors above this (default: %(default)s)")
    g.add_argument("--top-k", type=int, default=None, metavar="K",
                   help="only the top K singular triplets, matrix-free (no bulk or log-det): for models too large "
                        "for a dense J")
    g.add_argument("--float64", action="store_true",
                   help="train and differentiate in float64 (slower): float32 resolves singular values only down to "
                        "about 1e-6 of the largest, which limits the log-det")
    g.add_argument("--columns-per-batch", type=int, default=None,
                   help="tangent columns pushed at once, one seed at a time (default: what fits half the device's "
                        "total memory, at most 64 on CPU; or every column of several seeds vmapped where their "
                        "dense J fits, see the README)")
    g = p.add_argument_group("output")
    g.add_argument("--out", default=None, help="results directory (default: results/jacobian-YYYYmmdd-HHMMSS)")
    add_run_options(g, "replace an existing results directory", workers=None)
    return p.parse_args(argv)


def main(argv=None):
    run_jacobian(parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
