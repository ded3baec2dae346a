"""Generalization measures (Jiang et al. 2019) of every run of a finished sweep, from its saved parameters.

    python experiments/measures.py RESULTS_DIR                # measures.npz and measures.json beside the results
    python experiments/measures.py RESULTS_DIR --checkpoints  # at every kept checkpoint: measures_checkpoints.*

Measures, named as in the reference implementation (nitarshan/robust-generalization-measures): L2, L2_DIST,
INVERSE_MARGIN, LOG_PROD_OF_SPEC(_OVER_MARGIN), LOG_SUM_OF_SPEC(_OVER_MARGIN), LOG_SPEC_INIT_MAIN,
LOG_SPEC_ORIG_MAIN, FRO_OVER_SPEC, LOG_PROD_OF_FRO(_OVER_MARGIN), LOG_SUM_OF_FRO(_OVER_MARGIN), FRO_DIST,
DIST_SPEC_INIT, PARAM_NORM, PATH_NORM(_OVER_MARGIN), PACBAYES_INIT/ORIG/FLATNESS and PACBAYES_MAG_INIT/ORIG/FLATNESS,
adjusted for the training-set size as the reference does. The PAC-Bayes noise of run i (row i of seeds.npz) uses
the key fold_in(PRNGKey(--seed), i), at a checkpoint with its epoch folded in next. Then
`python experiments/figures.py RESULTS_DIR` also draws the measures' figures.
"""

import argparse

from grokjax.analysis.measures import MeasuresConfig
from grokjax.cli import add_run_options, run_cli
from grokjax.run.measures import run_measures


def parse_args(argv=None):
    d = MeasuresConfig()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results_dir", help="directory of a finished sweep (experiments/sweep_intersection.py)")
    g = p.add_argument_group("PAC-Bayes sigma search (defaults: the reference's)")
    g.add_argument("--search-depth", type=int, default=d.search_depth, help="bisection steps (default: %(default)s)")
    g.add_argument("--samples", type=int, default=d.samples,
                   help="noise draws per accuracy estimate (default: %(default)s)")
    g.add_argument("--displacement", type=float, default=d.displacement,
                   help="training-accuracy drop sought (default: %(default)s)")
    g.add_argument("--tolerance", type=float, default=d.tolerance, help="on the drop (default: %(default)s)")
    g.add_argument("--sigma-max", type=float, default=d.sigma_max, help="upper end of the search (default: %(default)s)")
    g.add_argument("--magnitude-eps", type=float, default=d.magnitude_eps,
                   help="noise floor of the magnitude-aware search (default: %(default)s)")
    g.add_argument("--seed", type=int, default=0, help="base key of the noise (default: %(default)s)")
    g = p.add_argument_group("execution")
    g.add_argument("--models-per-call", type=int, default=d.models_per_call,
                   help="models in one compiled call; fixes the numerics (default: the runner's policy)")
    add_run_options(g, "replace measures saved by an earlier run")
    g = p.add_argument_group("what to measure")
    g.add_argument("--checkpoints", action="store_true", help="at every checkpoint saved by the sweep (--keep-every)")
    g.add_argument("--first", type=int, default=None, metavar="N", help="only the first N runs (default: all)")
    return p.parse_args(argv)


def main(argv=None):
    run_measures(parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
