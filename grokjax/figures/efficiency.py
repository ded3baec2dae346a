"""Figures of a circuit-efficiency study (`efficiency.json`, `grokjax.run.efficiency`), from saved numbers alone: per
weight decay, the parameter norm of the memorizing and generalizing circuits against the training-set size with
their intervals and D_crit with its interval, and the fraction of true-label runs that generalized."""

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from grokjax.figures.common import figures_dir, save_figure
from grokjax.run.results import read_json


def is_efficiency_results(results_dir) -> bool:
    return (Path(results_dir) / "efficiency.json").is_file()


def efficiency_curves(info: dict) -> Figure:
    """One column per weight decay: norms against D (top), generalized fraction against D (bottom)."""
    columns = info["weight_decays"]
    fig = Figure(figsize=(max(7.0, 4.5 * len(columns)), 6.5), layout="constrained")
    axes = np.asarray(fig.subplots(2, len(columns), sharex=True, squeeze=False))
    for j, w in enumerate(columns):
        rows, top, bottom = w["sizes"], axes[0, j], axes[1, j]
        size = np.array([r["size"] for r in rows], float)
        for k, (key, label) in enumerate((("memorizing_norm", "memorizing (random labels)"),
                                          ("generalizing_norm", "generalizing (true labels, generalized)"))):
            mean, low, high = (np.array([r[key][q] if r[key][q] is not None else np.nan for r in rows], float)
                               for q in ("mean", "ci_low", "ci_high"))
            top.errorbar(size, mean, yerr=[np.nan_to_num(mean - low), np.nan_to_num(high - mean)], marker="o",
                         capsize=3, color=f"C{k}", label=label)
        for k, by in enumerate(w.get("by_set", []), start=2):
            mean = np.array([n["mean"] if n["mean"] is not None else np.nan for n in by["norm"]], float)
            d = by["d_crit"]["d_crit"]
            top.plot(size, mean, marker="s", linestyle=":", color=f"C{k + 1}",
                     label=f"grokked {by['set']}" + (f" (D_crit {d:.0f})" if np.isfinite(d) else ""))
        gen = np.array([r["generalizing_norm"]["mean"] for r in rows], float)
        if np.isfinite(gen).any():  # the level the crossing is read against: the generalizing mean over sizes
            top.axhline(np.nanmean(gen), color="C1", linestyle="--", linewidth=0.8)
        c = w["d_crit"]
        if np.isfinite(c["d_crit"]):
            top.axvline(c["d_crit"], color="black", linestyle="--", linewidth=1,
                        label=f"D_crit {c['d_crit']:.0f} [{c['ci_low']:.0f}, {c['ci_high']:.0f}]")
            if np.isfinite(c["ci_low"]):
                top.axvspan(c["ci_low"], c["ci_high"], color="0.85", zorder=0)
        top.set_title(f"weight decay {w['weight_decay']:g}")
        top.set_ylabel("norm at margin {:g}".format(info["target_margin"]) if info.get("homogeneity")
                       else "parameter norm at the end")
        top.legend(fontsize=7)
        top.grid(alpha=0.3)
        g = [r["generalized"] for r in rows]
        frac = np.array([x["fraction"] if x["fraction"] is not None else np.nan for x in g], float)
        low = np.array([x["ci_low"] if x["ci_low"] is not None else np.nan for x in g], float)
        high = np.array([x["ci_high"] if x["ci_high"] is not None else np.nan for x in g], float)
        bottom.errorbar(size, frac, yerr=[np.nan_to_num(frac - low), np.nan_to_num(high - frac)], marker="o",
                        capsize=3, color="C2")
        bottom.set_ylim(-0.05, 1.05)
        bottom.set_xlabel("training-set size D")
        bottom.set_ylabel(f"true-label runs generalized (held-out >= {info['threshold']:g})")
        bottom.grid(alpha=0.3)
    fig.suptitle("Circuit efficiency against the training-set size D (95% intervals over seeds)", fontsize=10)
    return fig


def draw_efficiency(results_dir, out_dir=None) -> list:
    """Draw the study's figure into `out_dir` (default RESULTS_DIR/figures); the paths written."""
    info = read_json(Path(results_dir) / "efficiency.json")
    path = figures_dir(results_dir, out_dir) / "efficiency.png"
    save_figure(efficiency_curves(info), path)
    return [path]
