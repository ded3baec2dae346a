"""The modular-arithmetic grokking challenge: every method, over its hyperparameter grid and many seeds, then a
leaderboard of steps to grok with error bars (`grokjax.analysis.leaderboard`).

Each (method, setting) is an ordinary sweep in `OUT/<method>/<k>` (resumable: run the same command again after an
interruption); a method's weight decays, or Grokfast alphas and lambdas, form one program (the sweep's grid). The
leaderboard is written all-or-nothing as `leaderboard.json` and
`leaderboard.npz` (every run's steps to 95% and 99% validation accuracy, -1 for never) in OUT.
"""

import dataclasses
import json
from pathlib import Path

import numpy as np

from grokjax.analysis.leaderboard import best_setting, speedup, steps_to, summarize
from grokjax.errors import UserError
from grokjax.models import OneHotMLPSpec
from grokjax.optim import OptimizerSpec
from grokjax.problems.modular import ModularProblem
from grokjax.run import runner, storage
from grokjax.run.outdir import refuse_existing, write_together
from grokjax.run.results import read_npz
from grokjax.run.specs import SweepConfig
from grokjax.run.sweep import run_stage
from grokjax.train import Schedule

THRESHOLDS = (0.95, 0.99)
BASE_OPTIMIZER = OptimizerSpec(kind="adamw", lr=3e-3, beta1=0.9, beta2=0.98, weight_decay=0.0)
"""AdamW with Power et al.'s betas; lr 3e-3 rather than their 1e-3, chosen (4 seeds per point, lr 1e-3 and 3e-3 x
weight decay 0 and 1) so that the challenge's MLP groks within a CPU budget of 3000 steps with weight decay 1."""
GROKFAST_OPTIMIZER = OptimizerSpec(kind="adam", lr=1e-3, beta1=0.9, beta2=0.98, weight_decay=0.0)
"""The Grokfast code's optimizer (ironjr/grokfast main.py defaults): torch.optim.Adam, lr 1e-3, betas 0.9/0.98,
its `weight_decay` an L2 term added to the (filtered) gradient; here on the weights, not the biases."""
METHODS = {
    "baseline": [{}],
    "weight_decay": [{"weight_decay_grid": (0.1, 1.0)}],
    "grokfast_ema": [{"filter": "ema", "filter_alpha": 0.98, "filter_lambda_grid": (2.0, 5.0)}],
    "grokfast_ma": [{"filter": "ma", "filter_window": 100, "filter_lambda": 5.0}],
    "stablemax": [{"loss": "stablemax"}],
    "orthograd": [{"ortho": True}],
}
"""Each method's settings: SweepConfig fields (loss, grids) or OptimizerSpec fields, over the base
config (AdamW lr 3e-3, betas 0.9/0.98, no weight decay, softmax cross-entropy)."""
GROKFAST_METHODS = {
    "baseline": [{}],
    "grokfast_ma": [{"filter": "ma", "filter_window": 100, "filter_lambda": 5.0, "weight_decay": 0.01}],
    "grokfast_ema": [{"filter": "ema", "filter_alpha": 0.98, "filter_lambda": 2.0, "weight_decay": 0.005}],
}
"""The Grokfast paper's comparison on x*y mod 97 (`grokfast_config`)."""
GROKFAST_PUBLISHED = {"baseline": 39890, "grokfast_ma": 790, "grokfast_ema": 910}
"""Its reported steps to 95% validation accuracy (one run each)."""


def base_config(p: int = 97, op: str = "+", split: str = "thread", steps: int = 3000, log_every: int = 50,
                n_seeds: int = 64, model=None) -> SweepConfig:
    """The challenge's task (x op y mod p on the generator's split), the StableMax paper's one-hot MLP by default,
    Power et al.'s minibatches of min(512, half the training set), validation accuracy logged every `log_every`
    steps; lengths in optimizer steps."""
    problem = ModularProblem(p=p, op=op, fraction=0.5, split=split)
    batch = min(512, problem.build().n_train // 2)
    return SweepConfig(problem=problem, model=model or OneHotMLPSpec(), optimizer=BASE_OPTIMIZER,
                       schedule=Schedule(length=steps, log_every=log_every, batch_size=batch, unit="steps"),
                       n_seeds=n_seeds)


def grokfast_config(n_seeds: int = 64, steps: int = 50000, log_every: int = 10, p: int = 97) -> SweepConfig:
    """The Grokfast paper's x*y mod p setup as its code runs it: its decoder (`TransformerSpec(block="grokfast")`:
    2 layers, width 128, 4 heads), Adam lr 1e-3, betas 0.9/0.98, minibatches of min(512, half the training set),
    10 warmup steps from lr 0, a random half for training; lengths in optimizer steps. (Its table has y != 0, ours
    all of x*y mod p: 97 more pairs, all with answer 0.)"""
    from grokjax.models import TransformerSpec

    problem = ModularProblem(p=p, op="*", fraction=0.5, split="random")
    batch = min(512, problem.build().n_train // 2)
    return SweepConfig(problem=problem, model=TransformerSpec(block="grokfast"), optimizer=GROKFAST_OPTIMIZER,
                       schedule=Schedule(length=steps, log_every=log_every, batch_size=batch, unit="steps",
                                         warmup_steps=10), n_seeds=n_seeds)


def setting_config(base: SweepConfig, setting: dict) -> SweepConfig:
    """`base` with a method's setting applied (sweep fields on the config, the rest on its optimizer)."""
    sweep_fields = {k: v for k, v in setting.items() if k == "loss" or k.endswith("_grid")}
    optimizer = dataclasses.replace(base.optimizer, **{k: v for k, v in setting.items() if k not in sweep_fields})
    return dataclasses.replace(base, optimizer=optimizer, **sweep_fields)


def _runs_of(root: Path, cfg: SweepConfig) -> list[tuple[dict, np.ndarray, np.ndarray]]:
    """Per grid point of the sweep in `root`: (its hyperparameters, steps to each threshold (runs,)), diverged runs
    (-2) apart."""
    traces, seeds = read_npz(root / "traces.npz", ("epochs", "heldout_acc")), read_npz(root / "seeds.npz", ())
    steps = traces["epochs"] * cfg.schedule.steps_per_unit(cfg.data().n_train)
    out = []
    grid = cfg.grid()
    for g in range(cfg.n_grid):
        rows = np.flatnonzero(seeds["grid_index"] == g)
        diverged = seeds["diverged"][rows]
        reached = [np.where(diverged, -2, steps_to(steps, traces["heldout_acc"][rows], q)) for q in THRESHOLDS]
        out.append(({k: float(v[g]) for k, v in grid.items()}, *reached))
    return out


def run_challenge(base: SweepConfig, out, methods=tuple(METHODS), workers: int = 0, overwrite: bool = False,
                  progress: bool = True, cache_dir: str | None = runner.default_cache_dir(), log=print,
                  table: dict = METHODS, published: dict | None = None) -> dict:
    """Train every setting of `methods` (names in `table`, each a list of settings) on `base` into `out`, then
    write and return the leaderboard; `published` steps to 95% per method are printed and saved beside ours."""
    out = Path(out)
    unknown = [m for m in methods if m not in table]
    if unknown:
        raise UserError(f"Unknown method {', '.join(unknown)}; expected some of {', '.join(table)}.")
    outputs = [out / "leaderboard.json", out / "leaderboard.npz"]
    refuse_existing(outputs, overwrite)
    budget = base.schedule.length * base.schedule.steps_per_unit(base.data().n_train)
    arrays, settings = {}, {}
    for method in methods:
        settings[method] = []
        for k, setting in enumerate(table[method]):
            cfg = setting_config(base, setting)
            root = out / method / str(k)
            log(f"{method} {k}: {json.dumps(setting)} -> {root}")
            run_stage(cfg, root, overwrite, progress=progress, workers=workers, cache_dir=cache_dir, log=log)
            for g, (hp, s95, s99) in enumerate(_runs_of(root, cfg)):
                i = len(settings[method])
                settings[method].append({**setting, **hp, "dir": f"{method}/{k}", "grid_index": g})
                arrays[f"{method}/{i}/steps_95"], arrays[f"{method}/{i}/steps_99"] = s95, s99
    board = leaderboard(arrays, settings, budget)
    for method, steps in (published or {}).items():
        if method in board:
            board[method]["published_steps_95"] = steps
    info = {"budget_steps": budget, "thresholds": list(THRESHOLDS), "config": base.to_dict(), "methods": board,
            "environment": storage.environment()}
    write_together({outputs[0]: lambda path: storage.write_json(path, info),
                    outputs[1]: lambda path: storage.write_arrays(path, arrays)})
    log("\n".join(format_leaderboard(board, budget)))
    return info


def leaderboard(arrays: dict, settings: dict, budget: int) -> dict:
    """Per method: its best setting (smallest median steps to 95%; its sweep directory under OUT and grid index),
    that setting's fraction grokked and median steps to 95% and 99% with intervals, and its speed-up over the
    baseline's (if run) with an interval."""
    table = {}
    for method, options in settings.items():
        finite = lambda i, q: arrays[f"{method}/{i}/steps_{q}"][arrays[f"{method}/{i}/steps_{q}"] != -2]
        never = lambda s: np.where(s == -2, -1, s)  # to choose the best setting, a diverged run never grokked
        best = best_setting(np.stack([never(arrays[f"{method}/{i}/steps_95"]) for i in range(len(options))]), budget)
        chosen = options[best]
        shown = {k: v for k, v in chosen.items() if k not in ("dir", "grid_index") and not k.endswith("_grid")}
        row = {"best": shown, "setting": best, "dir": chosen["dir"], "grid_index": chosen["grid_index"],
               "diverged": int(np.sum(arrays[f"{method}/{best}/steps_95"] == -2))}
        for q in (95, 99):
            row[f"steps_{q}"] = summarize(finite(best, q), budget)._asdict()
        table[method] = row
    if "baseline" in table:
        base = arrays["baseline/0/steps_95"]
        for method, row in table.items():
            ours = arrays[f"{method}/{row['setting']}/steps_95"]
            ratio, low, high = speedup(base[base != -2], ours[ours != -2], budget)
            row["speedup_95"] = {"ratio": ratio, "ci_low": low, "ci_high": high}
    return table


def format_leaderboard(table: dict, budget: int) -> list[str]:
    """The printed leaderboard: one line per method."""
    lines = [f"{'method':<14} {'runs':>5} {'grokked (95%) [95% CI]':>24} {'median steps to 95% [CI]':>27} "
             f"{'speed-up [CI]':>20}  best setting"]
    for method, row in table.items():
        s = row["steps_95"]
        g = s["grokked"]
        frac = f"{g['fraction']:.2f} [{g['ci_low']:.2f}, {g['ci_high']:.2f}]" if g["fraction"] is not None else "-"
        med = f"{s['median_steps']:.0f} [{s['median_low']:.0f}, {s['median_high']:.0f}]"
        sp = row.get("speedup_95")
        speed = f"{sp['ratio']:.2f} [{sp['ci_low']:.2f}, {sp['ci_high']:.2f}]" if sp else "-"
        best = ", ".join(f"{k} {v}" for k, v in row["best"].items())
        paper = f"  (published: {row['published_steps_95']})" if "published_steps_95" in row else ""
        lines.append(f"{method:<14} {s['n_runs']:>5} {frac:>24} {med:>27} {speed:>20}  {best}{paper}")
    lines.append(f"(a run that never reached 95% counts at the budget, {budget} steps; diverged runs are left out)")
    return lines
