"""Concealed parity over the number of bits (Miller, Gleeson et al., "Measuring sharpness in grokking"): one sweep
of seeds per n, the error-function fits of each, and the gap-sharpness collection across all of them.

`run_study` trains `OUT/n_<n>` for every n (an ordinary sweep, resumed when it exists: run the same command again
after an interruption), fits each (`grokjax.run.fits`, skipped when saved with the same settings), then gathers the
validation ("heldout") fits against training of every run into `OUT/sharpness.npz` and `.json` (`sharpness.collection`)
with the lines of relative and absolute sharpness against the relative gap. The number of bits is a loop over
sweeps today; when the sweep's grid can vary a problem field, `train_sweeps` becomes one sweep and `gather` reads
the axis from it, nothing else changes.
"""

import argparse
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


def parity_config(n_bits: int, n_seeds: int, epochs: int = PAPER["epochs"], log_every: int = 10, seed: int = 0,
                  data_seed: int = 0, k: int = PAPER["k"], n_train: int = PAPER["n_train"],
                  n_val: int = PAPER["n_val"], hidden_dim: int = PAPER["hidden_dim"], lr: float = PAPER["lr"],
                  weight_decay: float = PAPER["weight_decay"], batch_size: int = PAPER["batch_size"]) -> SweepConfig:
    """The sweep of one n: concealed parity, the ReLU MLP, SGD with L2 weight decay on the weights (the engine's
    PyTorch `weight_decay=` semantics, biases not decayed), minibatches reshuffled every epoch; all seeds in one
    compiled call."""
    return SweepConfig(problem=ConcealedParityProblem(n_bits=n_bits, k=k, n_train=n_train, n_val=n_val,
                                                      data_seed=data_seed),
                       model=ReluMLPSpec(hidden_dim=hidden_dim),
                       optimizer=OptimizerSpec(kind="sgd", lr=lr, weight_decay=weight_decay),
                       schedule=Schedule(length=epochs, log_every=log_every, batch_size=batch_size),
                       seed=seed, n_seeds=n_seeds, seeds_per_call=n_seeds)


def fit_options(a) -> argparse.Namespace:
    """The options of `fits.run_fits` for one sweep of the study."""
    return argparse.Namespace(results_dir=None, chance=None, iterations=a.iterations, min_r2=a.min_r2, tol=a.tol,
                              workers=1, overwrite=a.overwrite)


def train_sweeps(out: Path, configs: dict, a, log=print) -> dict:
    """Train (or resume, or find complete) and fit the sweep of every n; returns n -> its directory."""
    dirs = {}
    for n, cfg in configs.items():
        root = out / f"n_{n}"
        log(f"n = {n}: {cfg.n_seeds} seeds -> {root}")
        run_stage(cfg, root, progress=not a.no_progress, workers=a.workers, log=log,
                  cache_dir=runner.default_cache_dir())
        fits.run_fits(argparse.Namespace(**{**vars(fit_options(a)), "results_dir": str(root)}), log=log)
        dirs[n] = root
    return dirs


def gather(out: Path, dirs: dict, what: str, log=print) -> dict:
    """Collect the validation-against-training fits of every run of every sweep into OUT/sharpness.npz and .json;
    returns the json's contents."""
    tables, traces, axis, source, run = [], [], [], [], []
    for n, root in dirs.items():
        arrays = read_npz(root / "fits.npz", ("pairs", "curves", "epochs"), "experiments/fit_curves.py")
        names = [str(p) for p in arrays["pairs"]]
        if PAIR not in names:
            raise UserError(f"{root} has no held-out (validation) accuracy to fit.")
        table = sharpness.pair_table(arrays, names.index(PAIR))
        tables.append(table)
        saved = read_npz(root / "traces.npz", ("epochs", "train_acc", "heldout_acc"))
        traces.append((saved["epochs"], saved["train_acc"], saved["heldout_acc"]))
        axis += [n] * len(table["s_test"])
        source += [root.name] * len(table["s_test"])
        run.append(np.arange(len(table["s_test"])))
    if len({len(t[0]) for t in traces}) != 1:
        raise UserError(f"The sweeps in {out} log at different times; gather sweeps of one schedule.")
    combined = sharpness.combine(tables)
    arrays = sharpness.collection(combined, "n_bits", axis, traces[0][0], np.concatenate([t[1] for t in traces]),
                             np.concatenate([t[2] for t in traces]), source, np.concatenate(run))
    info = sharpness.collection_info(arrays, PAIR, what, "epochs")
    with guard(lambda: "the sweeps and their fits are kept: run the same command again"), locked(out):
        paths = fits.write_collection(out, "sharpness", arrays, info)
    log("\n".join(sharpness.collection_lines(info)))
    log(f"wrote {paths[0]} and {paths[1]}")
    return info


def run_study(a, log=print) -> dict:
    """The options `a` of experiments/concealed_parity.py: train and fit every n, then gather (see the module)."""
    if a.seeds < 1:
        raise UserError(f"The number of seeds must be a positive integer, got {a.seeds}.")
    if not a.n_bits or len(set(a.n_bits)) != len(a.n_bits):
        raise UserError("Give each number of bits once (--n-bits 25 26 ...).")
    configs = {n: parity_config(n, a.seeds, a.epochs, a.log_every, a.seed, a.data_seed, a.k, a.n_train, a.n_val,
                                a.hidden_dim, a.lr, a.weight_decay, a.batch_size) for n in a.n_bits}
    out = Path(a.out)
    first = next(iter(configs.values()))
    what = (f"concealed parity of {a.k} bits among n = {', '.join(map(str, a.n_bits))}, {a.seeds} seeds each, "
            f"{first.schedule.length} epochs")
    return gather(out, train_sweeps(out, configs, a, log), what, log)
