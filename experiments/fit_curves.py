"""Error-function fits of every run of a finished sweep: jump times, sharpness and how sharp grokking is.

    python experiments/fit_curves.py RESULTS_DIR        # fits.npz and fits.json beside the results
    python experiments/figures.py RESULTS_DIR           # then also draws the sharpness figures

Every accuracy curve of every run (training, the held-out set, each evaluation set's table) is fitted with
A(t) = a erf(s (t - t*)) + b, a and b fixed so that A rises from chance (1/K for K classes) to 1 (Miller, Gleeson
et al., "Measuring sharpness in grokking"); then, against the training curve, the relative grokking gap
t*_test / t*_train - 1, the relative sharpness s_test / s_train and the absolute sharpness (the fitted test curve's
largest slope). A curve that cannot be fitted says why (never reaches the midpoint, already above it at the first
log, did not converge, R^2 below --min-r2, sharper than the logs resolve). Running again with the same settings
does nothing; --overwrite fits again.
"""

import argparse

from grokjax.cli import add_run_options, run_cli
from grokjax.run.fits import add_fit_options, run_fits


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results_dir", help="directory of a finished sweep")
    p.add_argument("--chance", type=float, default=None,
                   help="chance accuracy c of every curve (default: 1/K for the problem's K classes)")
    add_fit_options(p)
    add_run_options(p, "replace fits saved earlier", workers=1, progress=False)  # fitting is fast, starting workers not
    return p.parse_args(argv)


def main(argv=None):
    run_fits(parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
