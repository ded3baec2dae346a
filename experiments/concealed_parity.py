"""Concealed parity over the number of bits, and how sharp its grokking is (Miller, Gleeson et al., "Measuring
sharpness in grokking"): one command trains every n, fits every run and draws the gap-sharpness figure.

    python experiments/concealed_parity.py --out results/parity                 # the paper's setting, 3 seeds per n
    python experiments/concealed_parity.py --out results/parity --n-bits 25 35 45 --seeds 5
    python experiments/figures.py results/parity                                # draw again from the saved arrays

The paper's setting is the default: the parity of k = 3 hidden bits among n = 25 ... 45 (the other bits random),
750 training and 250 validation strings, a two-layer ReLU MLP of width 1000, SGD lr 1e-2 with weight decay 1e-2,
batches of 32, 3000 epochs. Every n x seed is one sweep in OUT/sweep, one compiled program whose grid axis is the
number of bits (run the same command again to continue after an interruption: a finished sweep and its fits are
kept); every run's training and validation accuracy is fitted with A(t) = a erf(s (t - t*)) + b
(experiments/fit_curves.py), and OUT/sharpness.npz and .json gather the relative grokking gap, relative and
absolute sharpness of every run with the lines through them; the figures go to OUT/figures.
"""

import argparse

from grokjax.cli import add_run_options, draw_figures, run_cli
from grokjax.run.fits import add_fit_options
from grokjax.run.concealed_parity import PAPER, run_study


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="directory of the study (its sweep in OUT/sweep)")
    p.add_argument("--n-bits", type=int, nargs="+", default=list(PAPER["n_bits"]), metavar="N",
                   help="numbers of input bits, a grid axis of the sweep (default: 25 ... 45)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per n (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="base seed of the inits (seed i: fold_in(seed, i))")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the bit strings (default: %(default)s)")
    p.add_argument("--k", type=int, default=PAPER["k"], help="hidden bits (default: %(default)s)")
    p.add_argument("--n-train", type=int, default=PAPER["n_train"], help="training strings (default: %(default)s)")
    p.add_argument("--n-val", type=int, default=PAPER["n_val"], help="validation strings (default: %(default)s)")
    p.add_argument("--hidden-dim", type=int, default=PAPER["hidden_dim"], help="MLP width (default: %(default)s)")
    p.add_argument("--lr", type=float, default=PAPER["lr"], help="SGD learning rate (default: %(default)s)")
    p.add_argument("--weight-decay", type=float, default=PAPER["weight_decay"],
                   help="L2 weight decay on the weights (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=PAPER["batch_size"], help="(default: %(default)s)")
    p.add_argument("--epochs", type=int, default=PAPER["epochs"], help="(default: %(default)s)")
    p.add_argument("--log-every", type=int, default=10, help="epochs between metrics (default: %(default)s)")
    add_fit_options(p)
    add_run_options(p, "fit again even where fits are saved", figures=True)
    return p.parse_args(argv)


def main(argv=None):
    a = parse_args(argv)
    run_study(a)
    if not a.no_figures:
        draw_figures(a.out)


if __name__ == "__main__":
    run_cli(main)
