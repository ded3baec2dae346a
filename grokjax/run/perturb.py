"""Perturbation sweeps on a finished sweep's kept checkpoints: copies made call by call, trained through the
runner, summarized and written all-or-nothing beside the results (`perturb*.npz` and `.json`).

A job is runs x epochs x scales x copies; the copies of one epoch share a compiled program (they train the same
number of epochs to the end of the schedule), so an epoch sweep compiles once per epoch.
"""

import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np
from tqdm import tqdm

from grokjax.analysis.outcomes import category_names, grokked, outcome_counts
from grokjax.analysis.perturb import NOISE_KINDS, PUBLISHED_SCALES, CopyResult, copy_keys, perturb_program
from grokjax.errors import UserError
from grokjax.figures.common import seed_outcomes
from grokjax.run import runner, storage
from grokjax.run.outdir import guard, locked, refuse_existing, write_together
from grokjax.run.specs import SweepConfig
from grokjax.run.states import finished_sweep, load_states
from grokjax.run.sweep import run_inputs, with_call_width
from grokjax.train import TrainState


@dataclass(frozen=True)
class PerturbJob:
    """What to perturb: `runs` (rows of seeds.npz) at kept checkpoint `epochs`, with noise `kind` at `scales`,
    `copies` copies each; the optimizer restarted fresh (the study) unless `carry_optimizer`. Keys from `seed`."""

    runs: tuple[int, ...]
    epochs: tuple[int, ...]
    scales: tuple[float, ...]
    copies: int = 20
    kind: str = "sphere"
    carry_optimizer: bool = False
    seed: int = 0
    name: str = "perturb"

    def __post_init__(self):
        if self.kind not in NOISE_KINDS:
            raise UserError(f"Unknown noise '{self.kind}'; expected one of {', '.join(NOISE_KINDS)}.")
        if self.copies < 1 or not self.runs or not self.epochs or not self.scales:
            raise UserError("A perturbation needs at least one run, one epoch, one scale and one copy.")
        if any(not (np.isfinite(s) and s >= 0) for s in self.scales):
            raise UserError(f"Noise scales must be non-negative numbers, got {', '.join(map(str, self.scales))}.")
        if not 0 <= self.seed < 2**32:
            raise UserError(f"The seed must be an integer in [0, 2**32), got {self.seed}.")
        if not self.name.isidentifier():
            raise UserError(f"The output name must be letters, digits and underscores, got '{self.name}'.")


class Copies(runner.LazyInputs):
    """The inputs of every (run, scale, copy) of one epoch, in that order, made call by call from the runs' states."""

    def __init__(self, states: TrainState, hparams: dict, keys: np.ndarray, scales: np.ndarray, reference):
        self.states, self.hparams, self.keys, self.scales, self.reference = states, hparams, keys, scales, reference
        self.shape = (len(keys), len(scales), keys.shape[1])

    def __len__(self) -> int:
        return int(np.prod(self.shape))

    def take(self, rows) -> tuple:
        run, scale, copy = np.unravel_index(rows, self.shape)
        pick = lambda tree: jax.tree.map(lambda x: np.asarray(x)[run], tree)
        return (pick(self.states), pick(self.hparams), self.keys[run, copy], self.scales[scale].astype(np.float32),
                pick(self.reference))


def perturb_job(results_dir, scale_sweep: bool = False, epoch_sweep: bool = False, epochs=None, every: int = 100,
                scales=None, copies: int = 20, kind: str = "sphere", carry_optimizer: bool = False, runs=None,
                seed: int = 0, name: str | None = None) -> PerturbJob:
    """The job of experiments/perturb.py's options: the published scale sweep (at `epochs`), the epoch sweep (every
    kept checkpoint that is a multiple of `every`, scale 1e-2), or the given epochs and scales; runs default to the
    first 10."""
    sweep = finished_sweep(results_dir, checkpoints=True)[0]
    kept = sweep["traces"]["checkpoint_epochs"]
    if epoch_sweep:
        if every < 1:
            raise UserError(f"--every must be a positive number of epochs, got {every}.")
        epochs = epochs or [int(e) for e in kept if e % every == 0 and e < kept[-1]]
        if not epochs:
            raise UserError(f"The sweep kept no checkpoint at a multiple of {every} epochs before its end.")
        scales = scales or [1e-2]
    elif epochs is None:
        raise UserError("Give the kept checkpoints to perturb at with --epochs (or use --epoch-sweep).")
    if scales is None:
        scales = list(PUBLISHED_SCALES) if scale_sweep or not epoch_sweep else [1e-2]
    n_runs = len(sweep["seeds"]["grokked"])
    name = name or ("perturb_scales" if scale_sweep else "perturb_epochs" if epoch_sweep else "perturb")
    return PerturbJob(tuple(runs if runs is not None else range(min(10, n_runs))), tuple(int(e) for e in epochs),
                      tuple(float(x) for x in scales), copies, kind, carry_optimizer, seed, name)


def _checkpoint_index(kept_epochs: np.ndarray, epochs) -> list[int]:
    missing = [e for e in epochs if e not in kept_epochs]
    if missing:
        raise UserError(f"The sweep kept no checkpoint at epoch {', '.join(map(str, missing))}; it kept "
                        f"{', '.join(map(str, kept_epochs[:8]))}{' ...' if len(kept_epochs) > 8 else ''}.")
    return [int(np.flatnonzero(kept_epochs == e)[0]) for e in epochs]


def perturb_sweep(root, job: PerturbJob, workers: int = 0, overwrite: bool = False, progress: bool = True,
                  cache_dir: str | None = runner.default_cache_dir()) -> dict:
    """Run `job` on the finished sweep in `root`, write `{job.name}.npz` and `.json`, and return the arrays.
    Compiled programs are kept in `cache_dir` (None: not kept): worker processes compile each epoch's once."""
    root = Path(root)
    sweep, cfg, _ = finished_sweep(root, checkpoints=True)
    cfg = with_call_width(cfg)
    n_runs = len(sweep["seeds"]["grokked"])
    runs = np.asarray(job.runs, np.int64)
    if runs.min() < 0 or runs.max() >= n_runs:
        raise UserError(f"Runs must be rows of seeds.npz, 0 to {n_runs - 1}; got {', '.join(map(str, job.runs))}.")
    kept = np.asarray(sweep["traces"]["checkpoint_epochs"])
    columns = _checkpoint_index(kept, job.epochs)
    if cfg.schedule.unit != "epochs" or cfg.schedule.batch_size:
        raise UserError("Perturbation sweeps continue full-batch runs scheduled in epochs; this sweep is not one.")
    outputs = [root / f"{job.name}.npz", root / f"{job.name}.json"]
    refuse_existing(outputs, overwrite)
    with guard(lambda: "nothing was saved: run the same command again"), locked(root):
        return _perturb(root, cfg, sweep, job, runs, columns, workers, progress, outputs, cache_dir)


def _perturb(root, cfg: SweepConfig, sweep, job, runs, columns, workers, progress, outputs, cache_dir) -> dict:
    states = load_states(root, cfg, checkpoints=True, runs=runs)
    reference = load_states(root, cfg, runs=runs).params
    hparams = run_inputs(cfg, runs)[1]
    scales = np.asarray(job.scales, np.float64)
    total = len(runs) * len(job.epochs) * len(scales) * job.copies
    print(f"{job.kind} noise on {len(runs)} runs of {root} at epochs {', '.join(map(str, job.epochs))}, scales "
          f"{', '.join(f'{s:g}' for s in scales)}, {job.copies} copies each: {total} copies, optimizer "
          f"{'carried over' if job.carry_optimizer else 'fresh'}")
    parts, t0 = [], time.perf_counter()
    with tqdm(total=total, unit="copy", disable=not progress, file=sys.stderr, dynamic_ncols=True) as bar:
        for epoch, column in zip(job.epochs, columns):
            at = jax.tree.map(lambda x: x[:, column], states)
            n_logs = (cfg.schedule.length - epoch) // cfg.schedule.log_every
            inputs = Copies(at, hparams, copy_keys(job.seed, runs, epoch, job.copies), scales, reference)
            program = (perturb_program, (cfg, n_logs, not job.carry_optimizer, job.kind))
            done = bar.n
            out, _ = runner.map_program(program, inputs, cfg.seeds_per_call,
                                        runner.worker_count(workers, -(-len(inputs) // cfg.seeds_per_call)),
                                        on_call=lambda n: bar.update(done + n - bar.n), cache_dir=cache_dir, what="copy",
                                        option="the sweep's --seeds-per-call")
            parts.append(CopyResult(*(x.reshape(*inputs.shape, *x.shape[1:]) for x in out)))
    seconds = time.perf_counter() - t0
    result = CopyResult(*(np.stack(xs, 1) for xs in zip(*parts)))  # (runs, epochs, scales, copies, ...)
    reached = grokked(result.group_acc, sweep["threshold"]) & ~result.diverged[..., None]
    arrays = {"run": runs, "epochs": np.asarray(job.epochs), "scales": scales, **result._asdict(), "grokked": reached}
    remaining = sum(cfg.schedule.length - e for e in job.epochs) * len(runs) * len(scales) * job.copies
    info = {"kind": "perturbation", "settings": dataclasses.asdict(job),
            "run": {"seconds_with_compile": seconds, "model_epochs_per_s": remaining / seconds,
                    "device": str(jax.devices()[0]), "copies_per_call": cfg.seeds_per_call},
            "environment": storage.environment()}
    write_together({outputs[0]: lambda path: storage.write_arrays(path, arrays),
                    outputs[1]: lambda path: storage.write_json(path, info)})
    print("\n".join(summary_lines(sweep, arrays)))
    print(f"{seconds:.1f} s with compilation, {remaining / seconds:,.0f} model-epochs/s; wrote {outputs[0]} and "
          f"{outputs[1]}")
    return arrays


def summary_lines(sweep: dict, arrays: dict) -> list[str]:
    """Per epoch and scale, over every run's copies: how many end in each outcome, how many keep their run's
    outcome, how many diverged, and the mean distance of their final function from their run's."""
    names = category_names(sweep["group_names"])
    runs = arrays["run"]
    own = seed_outcomes(sweep["seeds"]["grokked"][runs], sweep["group_names"], sweep["diverged"][runs])
    width = max(len(n) for n in names)
    head = f"{'epoch':>6} {'scale':>9}  " + "  ".join(f"{n:>{width}}" for n in names)
    lines = [head + f"  {'same fate':>9}  {'diverged':>8}  {'distance':>8}"]
    for e, epoch in enumerate(arrays["epochs"]):
        for s, scale in enumerate(arrays["scales"]):
            ok = ~arrays["diverged"][:, e, s]  # (runs, copies)
            outcome = seed_outcomes(arrays["grokked"][:, e, s].reshape(-1, arrays["grokked"].shape[-1]),
                                    sweep["group_names"], ~ok.reshape(-1)).reshape(ok.shape)
            counts = outcome_counts(arrays["grokked"][:, e, s][ok])
            same = int(np.sum((outcome == own[:, None]) & ok))
            distance = arrays["distance"][:, e, s][ok]
            lines.append(f"{epoch:>6} {scale:>9.3g}  " + "  ".join(f"{c:>{width}}" for c in counts)
                         + f"  {same:>9}  {int((~ok).sum()):>8}  "
                         + (f"{distance.mean():>8.3f}" if distance.size else f"{'-':>8}"))
    return [f"copies per epoch and scale: {arrays['distance'][:, 0, 0].size} ({len(runs)} runs); unperturbed "
            f"outcomes: " + ", ".join(f"{n} {int(np.sum(own == n))}" for n in names if np.any(own == n))] + lines
