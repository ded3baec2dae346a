"""Concealed parity over the number of bits (Miller, Gleeson et al., "Measuring sharpness in grokking"): one sweep
of n x seeds, the error-function fits of every run, and the gap-sharpness collection.

`run_study` trains `OUT/sweep`, one compiled program whose grid axis "variant" is the number of bits
(`ConcealedParityProblem` with a tuple of n: each run its own strings and the network of its own width); an
ordinary sweep, resumed when it exists (run the same command again after an interruption). Then it fits every
run (`grokjax.run.fits`, skipped when saved with the same settings) and gathers the validation ("heldout") fits
against training into `OUT/sharpness.npz` and `.json` (`sharpness.collection`) with the lines of relative and
absolute sharpness against the relative gap.
"""

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from grokjax.analysis import sharpness
from grokjax.errors import UserError
from grokjax.models import ReluMLPSpec
from grokjax.optim import OptimizerSpec
from grokjax.problems import ConcealedParityProblem
from grokjax.run import fits, runner
from grokjax.run.outdir import guard, locked
from grokjax.run.results import read_npz
from grokjax.run.specs import SweepConfig
from grokjax.run.sweep import run_stage
from grokjax.train import Schedule

PAPER = {"k": 3, "n_bits": tuple(range(25, 46)), "n_train": 750, "n_val": 250, "hidden_dim": 1000, "lr": 1e-2,
         "weight_decay": 1e-2, "batch_size": 32, "epochs": 3000}
"""The paper's setting: parity of k = 3 bits among n = 25 ... 45, 750 training and 250 validation strings, a
two-layer ReLU MLP of width 1000, SGD lr 1e-2 with weight decay 1e-2, batches of 32, 3000 epochs."""
PAIR = "heldout"
"""The test curve of the collection: validation accuracy (the strings not trained on)."""


SWEEP = "sweep"
"""The sweep's directory inside the study's."""


def parity_config(n_bits: Sequence[int], n_seeds: int, epochs: int = PAPER["epochs"], log_every: int = 10,
                  seed: int = 0, data_seed: int = 0, k: int = PAPER["k"], n_train: int = PAPER["n_train"],
                  n_val: int = PAPER["n_val"], hidden_dim: int = PAPER["hidden_dim"], lr: float = PAPER["lr"],
                  weight_decay: float = PAPER["weight_decay"], batch_size: int = PAPER["batch_size"]) -> SweepConfig:
    """The sweep of every n x seed: concealed parity, the ReLU MLP, SGD with L2 weight decay on the weights (the
    engine's PyTorch `weight_decay=` semantics, biases not decayed), minibatches reshuffled every epoch."""
    return SweepConfig(problem=ConcealedParityProblem(n_bits=tuple(n_bits), k=k, n_train=n_train, n_val=n_val,
                                                      data_seed=data_seed),
                       model=ReluMLPSpec(hidden_dim=hidden_dim),
                       optimizer=OptimizerSpec(kind="sgd", lr=lr, weight_decay=weight_decay),
                       schedule=Schedule(length=epochs, log_every=log_every, batch_size=batch_size),
                       seed=seed, n_seeds=n_seeds)


def fit_options(a, root: Path) -> argparse.Namespace:
    """The options of `fits.run_fits` for the study's sweep in `root`."""
    return argparse.Namespace(results_dir=str(root), chance=None, iterations=a.iterations, min_r2=a.min_r2, tol=a.tol,
                              workers=1, overwrite=a.overwrite)


def gather(out: Path, root: Path, cfg: SweepConfig, what: str, log=print) -> dict:
    """Collect the validation-against-training fits of every run of the sweep in `root` into OUT/sharpness.npz and
    .json, the number of bits of each run as the axis; returns the json's contents."""
    arrays = read_npz(root / "fits.npz", ("pairs", "curves", "epochs", "run"), "experiments/fit_curves.py")
    names = [str(p) for p in arrays["pairs"]]
    if PAIR not in names:
        raise UserError(f"{root} has no held-out (validation) accuracy to fit.")
    table = sharpness.pair_table(arrays, names.index(PAIR))
    traces = read_npz(root / "traces.npz", ("epochs", "train_acc", "heldout_acc"))
    run = arrays["run"]
    axis = np.asarray(cfg.problem.bit_counts())[read_npz(root / "seeds.npz", ("variant",))["variant"][run].astype(int)]
    collected = sharpness.collection(table, "n_bits", axis, traces["epochs"], traces["train_acc"][run],
                                     traces["heldout_acc"][run], [root.name] * len(run), run)
    info = sharpness.collection_info(collected, PAIR, what, "epochs")
    with guard(lambda: "the sweep and its fits are kept: run the same command again"), locked(out):
        paths = fits.write_collection(out, "sharpness", collected, info)
    log("\n".join(sharpness.collection_lines(info)))
    log(f"wrote {paths[0]} and {paths[1]}")
    return info


def run_study(a, log=print) -> dict:
    """The options `a` of experiments/concealed_parity.py: train and fit every n x seed, then gather (see the
    module)."""
    if a.seeds < 1:
        raise UserError(f"The number of seeds must be a positive integer, got {a.seeds}.")
    cfg = parity_config(a.n_bits, a.seeds, a.epochs, a.log_every, a.seed, a.data_seed, a.k, a.n_train,
                        a.n_val, a.hidden_dim, a.lr, a.weight_decay, a.batch_size)
    out = Path(a.out)
    root = out / SWEEP
    log(f"{len(a.n_bits)} numbers of bits x {cfg.n_seeds} seeds -> {root}")
    run_stage(cfg, root, progress=not a.no_progress, workers=a.workers, log=log, cache_dir=runner.default_cache_dir())
    fits.run_fits(fit_options(a, root), log=log)
    what = (f"concealed parity of {a.k} bits among n = {', '.join(map(str, a.n_bits))}, {a.seeds} seeds each, "
            f"{cfg.schedule.length} epochs")
    return gather(out, root, cfg, what, log)
