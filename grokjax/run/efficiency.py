"""Circuit efficiency over training-set sizes (`grokjax.analysis.efficiency`): two sweeps over the same nested
training fractions, one on the true labels (OUT/generalizing) and one on random labels (OUT/memorizing), each
fractions x weight decays x seeds in one program and resumable; then, per weight decay, the norm curves of both
circuits with intervals, the fraction of true-label runs that generalized per size, and D_crit with its interval,
written all-or-nothing as OUT/efficiency.json and OUT/efficiency.npz.

Ungrokking (`run_ungrok`): a sweep on a large training fraction (OUT/large, resumable), then every run continued on
every smaller nested fraction (and the large one, the control), sizes x weight decays x seeds in one program, the
optimizer carried over or fresh; per size and weight decay the fraction of the runs that had generalized and no
longer have (`grokjax.analysis.regimes`), with Wilson intervals; OUT/ungrok.json and OUT/ungrok.npz.

Semi-grokking (`run_semigrok`): one sweep from scratch over the fractions (OUT/semigrok, resumable); per size and
weight decay the fraction of runs that semi-grokked by the rule of `grokjax.analysis.regimes` and of those that
fully generalized, with Wilson intervals; OUT/semigrok.json and OUT/semigrok.npz.
"""

import dataclasses
from pathlib import Path

import jax
import numpy as np

from grokjax.analysis.efficiency import TARGET_MARGIN, d_crit, mean_interval, norm_at_margin
from grokjax.analysis.outcomes import proportion
from grokjax.errors import UserError
from grokjax.models.base import homogeneity
from grokjax.run import runner, storage
from grokjax.run.outdir import refuse_existing, write_together
from grokjax.run.results import read_npz
from grokjax.analysis.regimes import semi_grokked, ungrokked
from grokjax.run.specs import SweepConfig
from grokjax.run.states import continue_runs, load_states
from grokjax.run.sweep import run_inputs, run_stage, with_call_width

PER_RUN = ("final_weight_norm", "final_train_loss", "final_mean_margin", "final_heldout_acc", "final_train_acc")


def circuit_configs(base: SweepConfig, fractions, label_seed: int = 0) -> dict:
    """The generalizing (true labels) and memorizing (labels permuted by `label_seed`) sweeps over `fractions`."""
    if not hasattr(base.problem, "label_seed"):
        raise UserError(f"The {base.problem.kind} problem has no random labels.")
    if len(fractions) < 2:
        raise UserError("Give at least two training fractions, so that there is a curve to cross.")
    gen = dataclasses.replace(base, fraction_grid=tuple(fractions), problem=dataclasses.replace(base.problem,
                                                                                                label_seed=-1))
    mem = dataclasses.replace(gen, problem=dataclasses.replace(base.problem, label_seed=label_seed))
    return {"generalizing": gen, "memorizing": mem}


def efficiency_norm(seeds: dict, degree: int | None) -> np.ndarray:
    """Per run, the norm its efficiency is read from: at the fixed margin for a model homogeneous of `degree`,
    else at the end of training (`grokjax.analysis.efficiency`)."""
    if degree is None:
        return seeds["final_weight_norm"]
    return norm_at_margin(seeds["final_weight_norm"], seeds["final_mean_margin"], degree)


def _interval(values, level: float) -> dict:
    """The mean of `values` and its bootstrap interval, as the summary's {"mean", "ci_low", "ci_high"}."""
    return dict(zip(("mean", "ci_low", "ci_high"), mean_interval(values, level)))


def summarize_circuits(gen: dict, mem: dict, fractions, weight_decays, sizes, threshold: float,
                       level: float = 0.95, degree: int | None = None, set_names=()) -> list[dict]:
    """Per weight decay: per size, each circuit's mean norm (`efficiency_norm` for models homogeneous of `degree`)
    with its interval, the generalized fraction of the true-label runs, the logit margin per unit norm and the
    memorizing runs' train accuracy; and D_crit. `gen` and `mem` are seeds.npz arrays (float32 fractions and
    weight decays), `fractions` (increasing) and `weight_decays` the sweeps' grid values, `sizes` the
    training-set size of each fraction; diverged runs are left out and counted, and so are memorizing runs whose
    mean margin is not positive (no norm at the fixed margin: "memorizing_no_norm"). With several evaluation sets
    (`set_names`, e.g. two groups on shared labels), also per set the generalizing circuit of the true-label runs
    that grokked that set (its `grokked` column) and its own D_crit ("by_set")."""
    levels = np.float32(fractions)
    out = []
    gen, mem = ({**d, "norm": efficiency_norm(d, degree)} for d in (gen, mem))
    for wd in weight_decays:
        g = {k: v[gen["weight_decay"] == np.float32(wd)] for k, v in gen.items()}
        m = {k: v[mem["weight_decay"] == np.float32(wd)] for k, v in mem.items()}
        g_size, m_size = np.searchsorted(levels, g["fraction"]), np.searchsorted(levels, m["fraction"])
        g_kept = ~g["diverged"] & (g["final_heldout_acc"] >= threshold)  # the generalizing circuit's runs
        m_kept = ~m["diverged"]
        rows = []
        for s, size in enumerate(sizes):
            # a size without held-out points (the whole set trained on) has no generalized fraction
            g_run = ~g["diverged"] & (g_size == s) & np.isfinite(g["final_heldout_acc"])
            g_gen, m_run = g_kept & (g_size == s), m_kept & (m_size == s)
            norm = lambda d, at: _interval(d["norm"][at], level)
            per_norm = lambda d, at: float(np.mean(d["final_mean_margin"][at] / d["final_weight_norm"][at])) \
                if at.any() else None
            rows.append({
                "size": int(size), "fraction": float(fractions[s]),
                "generalized": proportion(int(g_gen.sum()), int(g_run.sum()), level),
                "generalizing_norm": norm(g, g_gen), "memorizing_norm": norm(m, m_run),
                "generalizing_margin_per_norm": per_norm(g, g_gen), "memorizing_margin_per_norm": per_norm(m, m_run),
                "memorizing_train_acc": float(np.mean(m["final_train_acc"][m_run])) if m_run.any() else None,
                "diverged": int((g["diverged"] & (g_size == s)).sum() + (m["diverged"] & (m_size == s)).sum()),
                # runs without a norm to read (mean margin not positive: they do not fit their set on average)
                "memorizing_no_norm": int(np.sum(m_run & ~np.isfinite(m["norm"]))),
            })
        crit = d_crit(sizes, m["norm"][m_kept], m_size[m_kept], g["norm"][g_kept], g_size[g_kept], level)
        by_set = []
        for k, name in enumerate(set_names if len(set_names) > 1 else ()):
            won = ~g["diverged"] & g["grokked"][:, k]
            by_set.append({"set": name, "d_crit": d_crit(sizes, m["norm"][m_kept], m_size[m_kept], g["norm"][won],
                                                          g_size[won], level),
                           "norm": [_interval(g["norm"][won & (g_size == i)], level) for i in range(len(sizes))],
                           "grokked": [proportion(int((won & (g_size == i)).sum()),
                                                  int((~g["diverged"] & (g_size == i)).sum()), level)
                                       for i in range(len(sizes))]})
        out.append({"weight_decay": float(wd), "sizes": rows, "d_crit": crit, "by_set": by_set})
    return out


def run_efficiency(base: SweepConfig, fractions, out, label_seed: int = 0, threshold: float = 0.95, workers: int = 0,
                   overwrite: bool = False, progress: bool = True, cache_dir: str | None = runner.default_cache_dir(),
                   log=print) -> dict:
    """Train both circuits' sweeps into `out` (resuming any that exist), then write and return the summary."""
    out = Path(out)
    configs = circuit_configs(base, fractions, label_seed)
    outputs = [out / "efficiency.json", out / "efficiency.npz"]
    refuse_existing(outputs, overwrite)
    seeds = {}
    for name, cfg in configs.items():
        root = out / name
        log(f"{name} circuit -> {root}")
        run_stage(cfg, root, overwrite, progress=progress, workers=workers, cache_dir=cache_dir, log=log)
        seeds[name] = read_npz(root / "seeds.npz", ("fraction", "weight_decay", "diverged", "grokked") + PER_RUN)
    gen_cfg, data = configs["generalizing"], configs["generalizing"].data()
    fractions, sizes = sorted(set(gen_cfg.fraction_grid)), data.summary["n_train_by_fraction"]
    degree = homogeneity(base.model)
    table = summarize_circuits(seeds["generalizing"], seeds["memorizing"], fractions,
                               sorted(set(gen_cfg.grid()["weight_decay"])), sizes, threshold, degree=degree,
                               set_names=data.eval_names)
    efficiency = (f"parameter norm at mean logit margin {TARGET_MARGIN:g} (the model is homogeneous of degree "
                  f"{degree})" if degree else "parameter norm at the end of training (the model is not homogeneous)")
    info = {"threshold": threshold, "efficiency": efficiency, "homogeneity": degree, "target_margin": TARGET_MARGIN,
            "grok_threshold": base.grok_threshold, "label_seed": label_seed, "sizes": sizes,
            "n_points": data.n_points, "config": base.to_dict(), "weight_decays": table,
            "environment": storage.environment()}
    arrays = {f"{name}/{k}": v for name, s in seeds.items() for k, v in s.items()}
    write_together({outputs[0]: lambda path: storage.write_json(path, info),
                    outputs[1]: lambda path: storage.write_arrays(path, arrays)})
    for line in format_efficiency(info):
        log(line)
    return info


def format_efficiency(info: dict) -> list[str]:
    """The printed summary: per weight decay, one line per size and D_crit."""
    lines = []
    for w in info["weight_decays"]:
        c = w["d_crit"]
        lines.append(f"weight decay {w['weight_decay']:g}: D_crit {c['d_crit']:.0f} [{c['ci_low']:.0f}, "
                     f"{c['ci_high']:.0f}] (crossed in {100 * c['crossed_fraction']:.0f}% of bootstrap draws)")
        lines.append(f"  {'D':>6} {'generalized [CI]':>22} {'gen. norm [CI]':>24} {'mem. norm [CI]':>24} "
                     f"{'mem. train acc':>15}")
        for r in w["sizes"]:
            g, gn, mn = r["generalized"], r["generalizing_norm"], r["memorizing_norm"]
            frac = f"{g['fraction']:.2f} [{g['ci_low']:.2f}, {g['ci_high']:.2f}]" if g["fraction"] is not None else "-"
            cell = lambda n: f"{n['mean']:.1f} [{n['ci_low']:.1f}, {n['ci_high']:.1f}]"
            acc = "-" if r["memorizing_train_acc"] is None else f"{r['memorizing_train_acc']:.3f}"
            unfit = f" ({r['memorizing_no_norm']} unfitted left out)" if r.get("memorizing_no_norm") else ""
            lines.append(f"  {r['size']:>6} {frac:>22} {cell(gn):>24} {cell(mn):>24} {acc:>15}{unfit}")
        for b in w.get("by_set", []):
            c = b["d_crit"]
            grokked = ", ".join(f"{g['count']}" for g in b["grokked"])
            norms = ", ".join("-" if n["mean"] is None or not np.isfinite(n["mean"]) else f"{n['mean']:.1f}"
                              for n in b["norm"])
            lines.append(f"  {b['set']}: grokked per size {grokked}; norm of those {norms}; D_crit {c['d_crit']:.0f} "
                         f"[{c['ci_low']:.0f}, {c['ci_high']:.0f}]")
    return lines


def run_ungrok(base: SweepConfig, fractions, large: float, out, continue_epochs: int, fresh_optimizer: bool = False,
               threshold: float = 0.95, workers: int = 0, overwrite: bool = False, progress: bool = True,
               cache_dir: str | None = runner.default_cache_dir(), log=print) -> dict:
    """Train `base` at fraction `large` into OUT/large (resuming), continue every run `continue_epochs` on each of
    `fractions` (smaller) and on `large`, and write and return the ungrokking summary (see the module)."""
    out = Path(out)
    if any(not 0 < f < large for f in fractions):
        raise UserError(f"The fractions to continue on must lie below the large fraction {large}.")
    if continue_epochs % base.schedule.log_every:
        raise UserError(f"The continuation ({continue_epochs} epochs) must be a multiple of the log interval "
                        f"({base.schedule.log_every}).")
    levels = sorted(set(fractions)) + [large]
    first = with_call_width(dataclasses.replace(base, fraction_grid=(large,)))
    after = dataclasses.replace(first, fraction_grid=tuple(levels))  # the same pool, so the same program
    outputs = [out / "ungrok.json", out / "ungrok.npz"]
    refuse_existing(outputs, overwrite)
    root = out / "large"
    run_stage(first, root, overwrite, progress=progress, workers=workers, cache_dir=cache_dir, log=log)
    before = read_npz(root / "seeds.npz", ("final_heldout_acc", "diverged", "weight_decay", "seed"))
    states = load_states(root, first)
    hparams = run_inputs(first)[1]
    n, k = first.n_runs, len(levels)
    tiled = lambda x: np.tile(np.asarray(x), (k,) + (1,) * (np.ndim(x) - 1))  # copy c: level c // n, run c % n
    hparams = {name: tiled(v) for name, v in hparams.items()}
    hparams["fraction"] = np.repeat(np.float32(levels), n)
    log(f"continuing {n} runs {continue_epochs} epochs on {k} training fractions ({k * n} copies, optimizer "
        f"{'fresh' if fresh_optimizer else 'carried over'})")
    _, trace = continue_runs(after, jax.tree.map(tiled, states), hparams, continue_epochs // base.schedule.log_every,
                             fresh_optimizer, workers, cache_dir)
    start = tiled(before["final_heldout_acc"])
    diverged = tiled(before["diverged"]) | ~np.isfinite(trace.train_loss).all(1)
    lost = ungrokked(start, np.where(diverged, np.nan, trace.heldout_acc[:, -1]), threshold)
    had = (start >= threshold) & ~diverged
    arrays = {"fraction": hparams["fraction"], "weight_decay": hparams["weight_decay"], "seed": tiled(before["seed"]),
              "start_heldout_acc": start, "heldout_acc": trace.heldout_acc, "train_acc": trace.train_acc,
              "weight_norm": trace.weight_norm, "ungrokked": lost, "had_generalized": had, "diverged": diverged,
              "epochs": first.schedule.length + np.arange(1, trace.heldout_acc.shape[1] + 1) * base.schedule.log_every}
    sizes = after.data().summary["n_train_by_fraction"]
    table = []
    for wd in sorted(set(first.grid()["weight_decay"])):
        for f, size in zip(levels, sizes):
            at = had & (arrays["weight_decay"] == np.float32(wd)) & (arrays["fraction"] == np.float32(f))
            table.append({"weight_decay": float(wd), "fraction": float(f), "size": int(size),
                          "had_generalized": int(at.sum()), "ungrokked": proportion(int(lost[at].sum()), int(at.sum()))})
    info = {"threshold": threshold, "large": large, "continue_epochs": continue_epochs,
            "fresh_optimizer": fresh_optimizer, "config": first.to_dict(), "rows": table,
            "environment": storage.environment()}
    write_together({outputs[0]: lambda path: storage.write_json(path, info),
                    outputs[1]: lambda path: storage.write_arrays(path, arrays)})
    for row in table:
        u = row["ungrokked"]
        frac = "-" if u["fraction"] is None else f"{u['fraction']:.2f} [{u['ci_low']:.2f}, {u['ci_high']:.2f}]"
        log(f"weight decay {row['weight_decay']:g}, D {row['size']}: ungrokked {u['count']} of {row['had_generalized']}: {frac}")
    return info


def run_semigrok(base: SweepConfig, fractions, out, threshold: float = 0.95, workers: int = 0, overwrite: bool = False,
                 progress: bool = True, cache_dir: str | None = runner.default_cache_dir(), log=print) -> dict:
    """Train `base` over `fractions` from scratch into OUT/semigrok (resuming) and write and return the
    semi-grokking summary (see the module)."""
    out = Path(out)
    cfg = dataclasses.replace(base, fraction_grid=tuple(sorted(set(fractions))))
    outputs = [out / "semigrok.json", out / "semigrok.npz"]
    refuse_existing(outputs, overwrite)
    root = out / "semigrok"
    run_stage(cfg, root, overwrite, progress=progress, workers=workers, cache_dir=cache_dir, log=log)
    traces = read_npz(root / "traces.npz", ("epochs", "train_acc", "heldout_acc"))
    seeds = read_npz(root / "seeds.npz", ("fraction", "weight_decay", "diverged", "final_heldout_acc"))
    semi = semi_grokked(traces["epochs"], traces["train_acc"], traces["heldout_acc"]) & ~seeds["diverged"]
    full = (seeds["final_heldout_acc"] >= threshold) & ~seeds["diverged"]
    table, sizes = [], cfg.data().summary["n_train_by_fraction"]
    for wd in sorted(set(cfg.grid()["weight_decay"])):
        for f, size in zip(cfg.fraction_grid, sizes):
            at = ~seeds["diverged"] & (seeds["weight_decay"] == np.float32(wd)) & (seeds["fraction"] == np.float32(f))
            table.append({"weight_decay": float(wd), "fraction": float(f), "size": int(size), "runs": int(at.sum()),
                          "semi_grokked": proportion(int(semi[at].sum()), int(at.sum())),
                          "generalized": proportion(int(full[at].sum()), int(at.sum()))})
    info = {"threshold": threshold, "config": cfg.to_dict(), "rows": table, "environment": storage.environment()}
    arrays = {"semi_grokked": semi, "generalized": full, "fraction": seeds["fraction"],
              "weight_decay": seeds["weight_decay"]}
    write_together({outputs[0]: lambda path: storage.write_json(path, info),
                    outputs[1]: lambda path: storage.write_arrays(path, arrays)})
    for row in table:
        sg, g = row["semi_grokked"], row["generalized"]
        cell = lambda u: "-" if u["fraction"] is None else f"{u['fraction']:.2f} [{u['ci_low']:.2f}, {u['ci_high']:.2f}]"
        log(f"weight decay {row['weight_decay']:g}, D {row['size']}: semi-grokked {cell(sg)}, generalized {cell(g)} "
            f"of {row['runs']} runs")
    return info
