"""Transplant experiments in both directions: runs trained on one group's table (a sweep each, `source_<g>/`),
then continued on the intersection of the groups through the runner; fates counted with intervals and written
all-or-nothing (`transplant.npz`, `transplant.json`) in the output directory.

The first phase is an ordinary sweep (resumable: run the same command again after an interruption); the second
continues its saved final states (`grokjax.run.states`), the optimizer restarted fresh unless carried over.
"""

import dataclasses
import time
from pathlib import Path

import jax
import numpy as np

from grokjax.analysis.outcomes import proportion
from grokjax.analysis.transplant import classify, fate_counts
from grokjax.errors import UserError
from grokjax.run import runner, storage
from grokjax.run.outdir import refuse_existing, write_together
from grokjax.run.results import read_npz
from grokjax.run.specs import SweepConfig
from grokjax.run.states import continue_runs, load_states
from grokjax.run.sweep import diverged_runs, flat_outputs, run_inputs, run_stage, with_call_width


def source_config(cfg: SweepConfig, group: int, fraction: float, epochs: int) -> SweepConfig:
    """The first phase: `cfg`'s runs trained `epochs` on an iid `fraction` of group `group`'s table."""
    problem = dataclasses.replace(cfg.problem, task="iid", fraction=fraction, iid_group=group)
    return with_call_width(dataclasses.replace(cfg, problem=problem,
                                               schedule=dataclasses.replace(cfg.schedule, length=epochs)))


def _interval(count: int, n: int) -> str:
    """'7/100 = 7.0% [3.4%, 13.7%]': a count of n with its Wilson 95% interval."""
    p = proportion(count, n)
    return f"{count}/{n}" + (f" = {p['fraction']:.1%} [{p['ci_low']:.1%}, {p['ci_high']:.1%}]" if n else "")


def run_transplant(cfg: SweepConfig, out, epochs_before: int, source_fraction: float = 1.0,
                   carry_optimizer: bool = False, workers: int = 0, overwrite: bool = False, progress: bool = True,
                   cache_dir: str | None = runner.default_cache_dir()) -> dict:
    """Both directions of the transplant of `cfg` (its groups, model, optimizer, seeds; its schedule is the second
    phase on the intersection) into `out`; returns the fate counts per source group."""
    out = Path(out)
    if cfg.problem.kind != "groups" or len(cfg.problem.groups) != 2 or cfg.problem.task != "intersection":
        raise UserError("A transplant continues runs on the intersection of two groups: give exactly two groups.")
    if cfg.schedule.batch_size or epochs_before < cfg.schedule.log_every or epochs_before % cfg.schedule.log_every:
        raise UserError(f"Both phases must be full batch, the first a positive multiple of the log interval "
                        f"({cfg.schedule.log_every} epochs), got {epochs_before}.")
    outputs = [out / "transplant.npz", out / "transplant.json"]
    refuse_existing(outputs, overwrite)
    arrays, counts, t0 = {}, {}, time.perf_counter()
    names = list(cfg.problem.groups)
    for g, name in enumerate(names):
        src_cfg = source_config(cfg, g, source_fraction, epochs_before)
        root = out / f"source_{g}"
        print(f"phase 1: {cfg.n_runs} runs on {source_fraction:g} of {name}'s table for {epochs_before} epochs "
              f"-> {root}")
        run_stage(src_cfg, root, overwrite, progress=progress, workers=workers, cache_dir=cache_dir)
        states = load_states(root, src_cfg)
        before = read_npz(root / "traces.npz", ("group_acc",))["group_acc"][:, -1, g]
        after_cfg = dataclasses.replace(cfg, seeds_per_call=src_cfg.seeds_per_call)
        print(f"phase 2: the same runs on the intersection of {' and '.join(names)} for {cfg.schedule.length} "
              f"epochs, optimizer {'carried over' if carry_optimizer else 'fresh'}")
        final, trace = continue_runs(after_cfg, states, run_inputs(src_cfg)[1], cfg.schedule.n_logs,
                                     fresh_optimizer=not carry_optimizer, workers=workers, cache_dir=cache_dir)
        finite = ~diverged_runs(flat_outputs((final, trace, None)))  # the sweep's own definition of diverged
        fates = classify(before, trace.group_acc[..., g], trace.train_acc, cfg.grok_threshold, finite)
        counts[name] = fate_counts(fates)
        arrays.update({f"{g}/group_acc": trace.group_acc, f"{g}/train_acc": trace.train_acc,
                       f"{g}/train_loss": trace.train_loss, f"{g}/before_acc": before,
                       **{f"{g}/{k}": v for k, v in fates._asdict().items()}})
    arrays["epochs"] = epochs_before + cfg.schedule.log_every * np.arange(1, cfg.schedule.n_logs + 1)
    seconds = time.perf_counter() - t0
    info = {"kind": "transplant", "groups": names, "threshold": cfg.grok_threshold, "counts": counts,
            "settings": {"epochs_before": epochs_before, "epochs_after": cfg.schedule.length,
                         "source_fraction": source_fraction, "carry_optimizer": carry_optimizer,
                         "n_seeds": cfg.n_seeds, "seed": cfg.seed},
            "run": {"seconds_with_compile": seconds, "device": str(jax.devices()[0])},
            "environment": storage.environment()}
    write_together({outputs[0]: lambda path: storage.write_arrays(path, arrays),
                    outputs[1]: lambda path: storage.write_json(path, info)})
    for name, c in counts.items():
        n = c["grokked before"]
        print(f"{name} -> intersection: of {n} runs that grokked {name}'s table, stay grokked "
              f"{_interval(c['stays grokked'], n)}; ungrokked {_interval(c['ungrokked'], n)} (of which regrokked "
              f"by the end {c['regrokked']}); not grokked before {c['not grokked before']}, diverged {c['diverged']}")
    print(f"{seconds:.1f} s; wrote {outputs[0]} and {outputs[1]}")
    return counts
