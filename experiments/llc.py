"""Estimate the local learning coefficient (LLC) of every seed of a finished sweep, from its saved parameters.

    python experiments/llc.py RESULTS_DIR                 # llc.npz and llc.json beside the results
    python experiments/llc.py RESULTS_DIR --behavioral    # behavioral_llc.npz and .json
    python experiments/llc.py RESULTS_DIR --checkpoints   # at every saved checkpoint: llc_checkpoints.npz and .json
    python experiments/llc.py RESULTS_DIR --calibrate     # eps x nbeta grid on 4 runs: llc_calibration.npz, .json, .png

SGLD defaults are the published ones (eps 8e-4, nbeta 1000, gamma 1, 3000 full-batch steps, 60% burn-in, 4 chains).
Chains of run i (row i of seeds.npz) use the key fold_in(fold_in(fold_in(PRNGKey(--seed), i), 0x11C), chain) (the tag
0x11C keeps them apart from the sweep's init keys); at a checkpoint the checkpoint's epoch is folded in before the
tag. Then `python experiments/figures.py RESULTS_DIR` also draws the LLC figures.
"""

import argparse

from grokjax.analysis.llc import LLCConfig
from grokjax.cli import add_run_options, run_cli
from grokjax.run.llc import EPS_GRID, NBETA_GRID, run_llc

def parse_args(argv=None):
    d = LLCConfig()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results_dir", help="directory of a finished sweep (experiments/sweep_intersection.py)")
    g = p.add_argument_group("SGLD")
    g.add_argument("--eps", type=float, default=d.eps, help="step size (default: %(default)s)")
    g.add_argument("--nbeta", type=float, default=d.nbeta, help="n times inverse temperature (default: %(default)s)")
    g.add_argument("--gamma", type=float, default=d.gamma, help="localization strength (default: %(default)s)")
    g.add_argument("--steps", type=int, default=d.steps, help="steps per chain (default: %(default)s)")
    g.add_argument("--chains", type=int, default=d.chains, help="chains per model (default: %(default)s)")
    g.add_argument("--burn-in", type=float, default=d.burn_in, help="fraction of steps left out (default: %(default)s)")
    g.add_argument("--batch-size", type=int, default=d.batch_size, help="minibatch size, 0 for full batch (default: 0)")
    g.add_argument("--thin", type=int, default=d.thin, help="keep the loss every THIN steps (default: %(default)s)")
    g.add_argument("--models-per-call", type=int, default=d.models_per_call,
                   help="models in one compiled call; fixes the numerics, recorded with the results "
                        "(default: the runner's policy, on CPU as many models as make 8 chains, on an accelerator "
                        "what fits a quarter of its memory)")
    g.add_argument("--seed", type=int, default=0, help="base key of the chains (default: %(default)s)")
    add_run_options(g, "replace estimates saved by an earlier run")
    g = p.add_argument_group("what to estimate")
    g.add_argument("--behavioral", action="store_true", help="behavioral LLC: KL to the model's own outputs at w*")
    mode = g.add_mutually_exclusive_group()
    mode.add_argument("--checkpoints", action="store_true",
                      help="at every checkpoint saved by the sweep (--keep-every)")
    mode.add_argument("--calibrate", action="store_true", help="sweep an eps x nbeta grid on a few seeds instead")
    g.add_argument("--first", type=int, default=None, metavar="N",
                   help="only the first N runs, the rows of seeds.npz (default: all; 4 with --calibrate)")
    g.add_argument("--eps-grid", type=float, nargs="+", default=list(EPS_GRID), metavar="EPS", help="with --calibrate")
    g.add_argument("--nbeta-grid", type=float, nargs="+", default=list(NBETA_GRID), metavar="NBETA",
                   help="with --calibrate")
    return p.parse_args(argv)


def main(argv=None):
    run_llc(parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
