"""Draw the figures of a finished sweep (or training-Jacobian run) from its saved results; trains nothing and
never imports jax.

With LLC estimates saved by experiments/llc.py it also draws the LLC by outcome, against final train loss and
weight norm, over training and the calibration grid, and prints the LLC's correlations with loss and norm.

    python experiments/figures.py results/sweep-20250101-120000            # into RESULTS_DIR/figures/
    python experiments/figures.py results/sweep-20250101-120000 --out figs
    python experiments/figures.py results/jacobian-20250101-120000         # spectra and sigma_max against T
    python experiments/figures.py results/parity                           # a sharpness study (concealed parity,
                                                                           # the linear teacher): gap against sharpness

With error-function fits saved by experiments/fit_curves.py it also draws relative and absolute sharpness against the
relative grokking gap and example fits.
"""

import argparse

from grokjax.cli import run_cli
from grokjax.figures import draw


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results_dir", help="directory written by experiments/sweep_intersection.py, "
                                       "experiments/training_jacobian.py, experiments/concealed_parity.py, ...")
    p.add_argument("--out", default=None, help="directory for the PNGs (default: RESULTS_DIR/figures)")
    a = p.parse_args(argv)
    paths, lines = draw(a.results_dir, a.out)
    print("\n".join(map(str, paths + lines)))


if __name__ == "__main__":
    run_cli(main)
