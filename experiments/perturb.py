"""Perturbation sensitivity: noise added to chosen runs of a finished sweep at kept checkpoints, training continued
to the end, and how their fate changes. Needs a sweep run with --keep-every K.

    python experiments/perturb.py RESULTS_DIR --scale-sweep --epochs 500   # the study's scale sweep at epoch 500
    python experiments/perturb.py RESULTS_DIR --epoch-sweep                # every 100 epochs at scale 1e-2
    python experiments/perturb.py RESULTS_DIR --epochs 0 300 --scales 0.1 1 --copies 8 --kind normal

--scale-sweep: scales 0 and 2^-25, 2^-23, ..., 2^5; --epoch-sweep: every kept checkpoint that is a multiple of 100
(--every), scale 1e-2; both 20 copies and the study's noise, per parameter tensor a random direction of norm
`scale` ("sphere"), with the optimizer restarted fresh. Copy c of run i at epoch e draws its noise with the key
fold_in(fold_in(fold_in(fold_in(PRNGKey(--seed), i), e), 0x9E7), c), the same direction at every scale. Writes
perturb_scales.npz / perturb_epochs.npz / perturb.npz (--name) and .json beside the results: per (run, epoch,
scale, copy) the final accuracy and loss on every group, the outcome and the fraction of the table where the
final argmax differs from the unperturbed run's. Then `python experiments/figures.py RESULTS_DIR` draws them.
"""

import argparse

from grokjax.analysis.perturb import NOISE_KINDS, PUBLISHED_SCALES
from grokjax.cli import add_run_options, run_cli
from grokjax.run import runner
from grokjax.run.perturb import perturb_job, perturb_sweep


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results_dir", help="directory of a finished sweep with checkpoints (--keep-every)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--scale-sweep", action="store_true", help="the published scales (give --epochs)")
    mode.add_argument("--epoch-sweep", action="store_true", help="every --every epochs at --scales (default 1e-2)")
    p.add_argument("--epochs", type=int, nargs="+", default=None, help="kept checkpoints to perturb at")
    p.add_argument("--every", type=int, default=100, help="with --epoch-sweep: the epoch spacing (default: 100)")
    p.add_argument("--scales", type=float, nargs="+", default=None,
                   help=f"noise scales (default: {len(PUBLISHED_SCALES)} published ones, 1e-2 with --epoch-sweep)")
    p.add_argument("--copies", type=int, default=20, help="copies per run, epoch and scale (default: 20)")
    p.add_argument("--kind", choices=NOISE_KINDS, default="sphere", help="noise (default: sphere)")
    p.add_argument("--carry-optimizer", action="store_true",
                   help="keep the optimizer state of the checkpoint (default: restart it fresh, as the study)")
    p.add_argument("--runs", type=int, nargs="+", default=None, help="rows of seeds.npz (default: the first 10)")
    p.add_argument("--seed", type=int, default=0, help="base key of the noise (default: 0)")
    p.add_argument("--name", default=None, help="output name (default: perturb_scales, perturb_epochs or perturb)")
    add_run_options(p, "replace earlier results of the same name", compile_cache=True)
    a = p.parse_args(argv)
    job = perturb_job(a.results_dir, scale_sweep=a.scale_sweep, epoch_sweep=a.epoch_sweep, epochs=a.epochs,
                      every=a.every, scales=a.scales, copies=a.copies, kind=a.kind, carry_optimizer=a.carry_optimizer,
                      runs=a.runs, seed=a.seed, name=a.name)
    perturb_sweep(a.results_dir, job, workers=a.workers, overwrite=a.overwrite, progress=not a.no_progress,
                  cache_dir=None if a.no_compile_cache else runner.default_cache_dir())


if __name__ == "__main__":
    run_cli(main)
