"""Train many seeds on an ambiguous training set and count which group each one grokked.

Defaults reproduce the published run: S(4) vs A(4) x Z(2) on their full
intersection, MLP2 with D = H = 32, Adam (lr 1e-2, betas 0.9/0.98, L2 weight
decay 2e-5 on weights), 3000 full-batch epochs.

    python experiments/sweep_intersection.py --n-seeds 10000
"""

import argparse
import time

from grokjax.cli import run_cli
from grokjax.errors import UserError
from grokjax.execute import default_cache_dir, start_distributed
from grokjax.outcomes import CI_METHODS
from grokjax.sweep import SweepConfig, read_sweep_config, run_sweep
from grokjax.tasks import TASK_KINDS
from grokjax.train import OPTIMIZERS, PRECISIONS, TrainConfig


def parse_args(argv=None):
    d, t = SweepConfig(), TrainConfig()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("task")
    g.add_argument("--groups", nargs="+", default=list(d.groups), metavar="SPEC",
                   help="group specs on shared labels, e.g. 'S(4)' 'times(A(4),Z(2))' (default: %(default)s)")
    g.add_argument("--task", choices=TASK_KINDS, default=d.task, help="training set (default: %(default)s)")
    g.add_argument("--fraction", type=float, default=d.fraction,
                   help="fraction of the intersection (intersection_fraction) or of a table (iid) (default: %(default)s)")
    g.add_argument("--group-fractions", type=float, nargs="+", default=list(d.group_fractions), metavar="F",
                   help="intersection_plus: fraction of each group's own pairs added, one per group")
    g.add_argument("--iid-group", type=int, default=d.iid_group, help="iid: index of the group whose table is sampled")
    g.add_argument("--data-seed", type=int, default=d.data_seed, help="seed of the training-set sampling (default: %(default)s)")
    g = p.add_argument_group("model and optimiser")
    g.add_argument("--embed-dim", type=int, default=t.embed_dim, help="D (default: %(default)s)")
    g.add_argument("--hidden-dim", type=int, default=t.hidden_dim, help="H (default: %(default)s)")
    g.add_argument("--no-unembed-bias", action="store_true", help="drop the unembedding bias b_u")
    g.add_argument("--optimizer", choices=OPTIMIZERS, default=t.optimizer, help="(default: %(default)s)")
    g.add_argument("--lr", type=float, nargs="+", default=[t.lr], metavar="LR",
                   help="learning rate; several values sweep a grid with every seed (default: %(default)s)")
    g.add_argument("--beta1", type=float, default=t.beta1, help="Adam beta1 (default: %(default)s)")
    g.add_argument("--beta2", type=float, default=t.beta2, help="Adam beta2 (default: %(default)s)")
    g.add_argument("--eps", type=float, default=t.eps, help="Adam epsilon (default: %(default)s)")
    g.add_argument("--weight-decay", type=float, nargs="+", default=[t.weight_decay], metavar="WD",
                   help="L2 on weights for adam/sgd, decoupled for adamw; several values sweep a grid, "
                        "crossed with the learning rates (default: %(default)s)")
    g.add_argument("--momentum", type=float, default=t.momentum, help="SGD momentum (default: %(default)s)")
    g.add_argument("--epochs", type=int, default=t.epochs, help="full-batch epochs (default: %(default)s)")
    g.add_argument("--log-every", type=int, default=t.log_every, help="epochs between metrics (default: %(default)s)")
    g.add_argument("--keep-every", type=int, default=t.keep_every,
                   help="also save every seed's parameters every this many epochs, for analyses over "
                        "training time (default: only the final ones)")
    g.add_argument("--matmul-precision", choices=PRECISIONS, default=t.matmul_precision, help="(default: %(default)s)")
    g = p.add_argument_group("seeds, outcome and output")
    g.add_argument("--n-seeds", type=int, default=d.n_seeds, help="number of init seeds (default: %(default)s)")
    g.add_argument("--seed", type=int, default=d.seed, help="base init seed; seed i uses fold_in(seed, i) (default: %(default)s)")
    g.add_argument("--seeds-per-call", type=int, default=d.seeds_per_call,
                   help="seeds in one compiled call; fixes the numerics, recorded with the results "
                        "(default: 8 on CPU, what fits a quarter of an accelerator's memory)")
    g.add_argument("--chunk-size", type=int, default=None,
                   help="runs written per chunk file, rounded up to whole calls; never changes the numbers "
                        "(default: what fits an eighth of the free memory, at most 1024)")
    g.add_argument("--workers", type=int, default=0,
                   help="CPU worker processes; never changes the numbers (default: one per core on a CPU)")
    g.add_argument("--grok-threshold", type=float, default=d.grok_threshold,
                   help="full-table accuracy that counts as grokked (default: %(default)s)")
    g.add_argument("--ci", choices=CI_METHODS, default=d.ci_method, help="confidence interval method (default: %(default)s)")
    g.add_argument("--out", default=None, help="results directory (default: results/sweep-YYYYmmdd-HHMMSS)")
    mode = g.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue an interrupted sweep in --out")
    mode.add_argument("--overwrite", action="store_true", help="replace an existing results directory")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    cache = g.add_mutually_exclusive_group()
    cache.add_argument("--compile-cache", default=default_cache_dir(), metavar="DIR",
                       help="keep compiled programs here so the next run of a config skips compilation "
                            "(default: $GROKJAX_CACHE_DIR or %(default)s)")
    cache.add_argument("--no-compile-cache", action="store_true", help="compile afresh, keep nothing")
    g = p.add_argument_group("multi-host (every process runs this same command; see the README)")
    g.add_argument("--distributed", action="store_true",
                   help="join a multi-host run through jax.distributed; without the options below, the "
                        "coordinator and process ids come from the cluster (SLURM, Open MPI, ...)")
    g.add_argument("--coordinator", default=None, metavar="HOST:PORT", help="address of process 0")
    g.add_argument("--num-processes", type=int, default=None, help="number of processes")
    g.add_argument("--process-id", type=int, default=None, help="this process's index, 0 .. num-processes - 1")
    args = p.parse_args(argv)
    if args.resume and args.out is None:
        p.error("--resume needs --out: name the results directory to continue")
    if args.resume:  # the saved config supplies every option not given again
        p.set_defaults(**saved_options(args.out))
        args = p.parse_args(argv)
    return args


def saved_options(out: str) -> dict:
    """The command-line options of the sweep saved in `out`, as argparse defaults."""
    c = read_sweep_config(out)
    t = c.train
    return dict(
        groups=list(c.groups), task=c.task, fraction=c.fraction, group_fractions=list(c.group_fractions),
        iid_group=c.iid_group, data_seed=c.data_seed, embed_dim=t.embed_dim, hidden_dim=t.hidden_dim,
        no_unembed_bias=not t.unembed_bias, optimizer=t.optimizer, lr=list(c.lr_grid or [t.lr]), beta1=t.beta1,
        beta2=t.beta2, eps=t.eps, weight_decay=list(c.weight_decay_grid or [t.weight_decay]), momentum=t.momentum,
        epochs=t.epochs, log_every=t.log_every, keep_every=t.keep_every, matmul_precision=t.matmul_precision,
        n_seeds=c.n_seeds, seed=c.seed, seeds_per_call=c.seeds_per_call, grok_threshold=c.grok_threshold,
        ci=c.ci_method)


def main(argv=None):
    a = parse_args(argv)
    train = TrainConfig(
        embed_dim=a.embed_dim, hidden_dim=a.hidden_dim, unembed_bias=not a.no_unembed_bias, optimizer=a.optimizer,
        lr=a.lr[0], beta1=a.beta1, beta2=a.beta2, eps=a.eps, weight_decay=a.weight_decay[0], momentum=a.momentum,
        epochs=a.epochs, log_every=a.log_every, keep_every=a.keep_every, matmul_precision=a.matmul_precision)
    cfg = SweepConfig(
        groups=tuple(a.groups), task=a.task, fraction=a.fraction, group_fractions=tuple(a.group_fractions),
        iid_group=a.iid_group, data_seed=a.data_seed, seed=a.seed, n_seeds=a.n_seeds,
        grok_threshold=a.grok_threshold, ci_method=a.ci, seeds_per_call=a.seeds_per_call,
        lr_grid=tuple(a.lr) if len(a.lr) > 1 else (),
        weight_decay_grid=tuple(a.weight_decay) if len(a.weight_decay) > 1 else (), train=train)
    if a.distributed or a.coordinator:
        start_distributed(a.coordinator, a.num_processes, a.process_id)
    if a.out is None and (a.distributed or a.coordinator):
        raise UserError("A multi-host sweep needs --out: a directory on a filesystem every process shares.")
    out = a.out or time.strftime("results/sweep-%Y%m%d-%H%M%S")
    run_sweep(cfg, out, chunk_size=a.chunk_size, resume=a.resume, overwrite=a.overwrite, progress=not a.no_progress,
              workers=a.workers, cache_dir=None if a.no_compile_cache else a.compile_cache)


if __name__ == "__main__":
    run_cli(main, interrupted="Interrupted; finished chunks are saved: run again with --resume --out DIR to continue.")
