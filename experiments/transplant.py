"""Transplant: train runs on one group's whole table until they grok it, then continue them on the intersection of
two groups, and count how many keep their solution, ungrok (lose it while still fitting the intersection) or
regrok, in both directions, with Wilson 95% intervals. The study saw about 7% partial ungrokking from S4 to the S4
vs A4xZ2 intersection and 8% the other way.

    python experiments/transplant.py --n-seeds 2000 --out results/transplant          # S4 <-> S4 vs A4xZ2
    python experiments/transplant.py --n-seeds 200 --epochs-before 1000 --epochs 2000 --carry-optimizer

Phase 1 (`--epochs-before`, default 1000) trains every seed on `--source-fraction` (default 1: the whole table, as
the authors did) of each group's table, a resumable sweep in OUT/source_<g>; phase 2 (`--epochs`, default 3000)
continues the same runs on the intersection, the optimizer restarted fresh unless --carry-optimizer. Model and
optimizer options are the sweep's (the published MLP2 and Adam). Writes OUT/transplant.npz and .json; then
`python experiments/figures.py OUT` draws the accuracy curves of the ungrokking and regrokking runs.
"""

import argparse
import time

from grokjax.cli import add_config_options, add_run_options, config_from_args, run_cli
from grokjax.run import runner
from grokjax.run.transplant import run_transplant


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_options(p, grid=False)
    g = p.add_argument_group("transplant")
    g.add_argument("--epochs-before", type=int, default=1000, help="phase 1 epochs on a group's table (default: 1000)")
    g.add_argument("--source-fraction", type=float, default=1.0, help="iid fraction of the table in phase 1 (default: 1)")
    g.add_argument("--carry-optimizer", action="store_true", help="keep phase 1's optimizer state (default: fresh)")
    g.add_argument("--n-seeds", type=int, default=100, help="runs per direction (default: 100)")
    g.add_argument("--seed", type=int, default=0, help="base init seed (default: 0)")
    g.add_argument("--grok-threshold", type=float, default=0.999, help="accuracy that counts as grokked (default: 0.999)")
    add_run_options(g, "replace earlier results in --out", compile_cache=True)
    g.add_argument("--out", default=None, help="output directory (default: results/transplant-YYYYmmdd-HHMMSS)")
    a = p.parse_args(argv)
    cfg = config_from_args(a, seed=a.seed, n_seeds=a.n_seeds, grok_threshold=a.grok_threshold)
    run_transplant(cfg, a.out or time.strftime("results/transplant-%Y%m%d-%H%M%S"), a.epochs_before,
                   a.source_fraction, a.carry_optimizer, a.workers, a.overwrite, not a.no_progress,
                   None if a.no_compile_cache else runner.default_cache_dir())


if __name__ == "__main__":
    run_cli(main)
