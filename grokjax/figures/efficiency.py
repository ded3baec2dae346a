"""Figures of a circuit-efficiency study (`grokjax.run.efficiency`), from saved numbers alone: per weight decay, the
norm of the memorizing and generalizing circuits against the training-set size with their intervals and D_crit
with its interval, and the fraction of true-label runs that generalized (`efficiency.json`); the ungrokked
fraction per size and the held-out curves of the continuation (`ungrok.json`); the semi-grokked and generalized
fractions per size and the held-out curves from scratch (`semigrok.json`)."""

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from grokjax.figures.common import field_arrays, figures_dir, save_figure
from grokjax.run.results import read_json, read_npz


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
            mean, low, high = field_arrays([r[key] for r in rows], ("mean", "ci_low", "ci_high"))
            top.errorbar(size, mean, yerr=[np.nan_to_num(mean - low), np.nan_to_num(high - mean)], marker="o",
                         capsize=3, color=f"C{k}", label=label)
        for k, by in enumerate(w.get("by_set", []), start=2):
            mean, = field_arrays(by["norm"], ("mean",))
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
        _fractions_against_size(bottom, rows, "generalized", None, "C2")
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


def is_ungrok_results(results_dir) -> bool:
    return (Path(results_dir) / "ungrok.json").is_file()


def is_semigrok_results(results_dir) -> bool:
    return (Path(results_dir) / "semigrok.json").is_file()


def _fractions_against_size(ax, rows: list, key: str, label: str | None, colour: str, marker: str = "o") -> None:
    """Plot row[key] (a proportion with its interval) against row["size"], rows of one weight decay."""
    size = np.array([r["size"] for r in rows], float)
    frac, low, high = field_arrays([r[key] for r in rows], ("fraction", "ci_low", "ci_high"))
    ax.errorbar(size, frac, yerr=[np.nan_to_num(frac - low), np.nan_to_num(high - frac)], marker=marker, capsize=3,
                color=colour, label=label)


def _curves_by_size(ax, epochs, curves, size_of_run, sizes, title: str) -> None:
    """Median held-out accuracy over the runs of each size (and each run faintly), one colour per size."""
    for k, size in enumerate(sizes):
        at = size_of_run == size
        if not at.any():
            continue
        ax.plot(epochs, curves[at].T, color=f"C{k}", alpha=0.12, linewidth=0.6)
        ax.plot(epochs, np.nanmedian(curves[at], 0), color=f"C{k}", linewidth=1.8, label=f"D {size}")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title, fontsize=9)
    ax.set_ylabel("held-out accuracy")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, ncol=2)
    else:
        ax.text(0.5, 0.5, "no run to show", transform=ax.transAxes, ha="center")


def ungrok_figure(info: dict, arrays: dict) -> Figure:
    """Left: the ungrokked fraction of the runs that had generalized, per size and weight decay; right: held-out
    accuracy through the continuation per size (one weight decay: the middle one)."""
    fig = Figure(figsize=(12, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    decays = sorted({r["weight_decay"] for r in info["rows"]})
    for k, wd in enumerate(decays):
        _fractions_against_size(left, [r for r in info["rows"] if r["weight_decay"] == wd], "ungrokked",
                                f"weight decay {wd:g}", f"C{k}")
    left.set_xlabel("size D of the set training continues on")
    left.set_ylabel(f"ungrokked (held-out < {info['threshold']:g} at the end)")
    left.set_ylim(-0.05, 1.05)
    left.grid(alpha=0.3)
    left.legend(fontsize=8)
    left.set_title(f"runs generalized at {info['large']:g} of the table, then {info['continue_epochs']} epochs on a "
                   f"nested subset ({'fresh' if info['fresh_optimizer'] else 'carried'} optimizer)", fontsize=9)
    wd = decays[len(decays) // 2]
    at = (arrays["weight_decay"] == np.float32(wd)) & arrays["had_generalized"]
    size_of = {np.float32(r["fraction"]): r["size"] for r in info["rows"]}
    sizes = np.array([size_of[np.float32(f)] for f in arrays["fraction"][at]])
    _curves_by_size(right, arrays["epochs"], arrays["heldout_acc"][at], sizes, sorted(set(sizes)),
                    f"held-out accuracy while continuing (weight decay {wd:g}; median and each run)")
    right.set_xlabel("epoch")
    return fig


def semigrok_figure(info: dict, arrays: dict, traces: dict) -> Figure:
    """Left: semi-grokked and generalized fractions per size; right: held-out accuracy from scratch per size."""
    fig = Figure(figsize=(12, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    for k, wd in enumerate(sorted({r["weight_decay"] for r in info["rows"]})):
        rows = [r for r in info["rows"] if r["weight_decay"] == wd]
        _fractions_against_size(left, rows, "semi_grokked", f"semi-grokked (wd {wd:g})", f"C{2 * k}")
        _fractions_against_size(left, rows, "generalized", f"generalized (wd {wd:g})", f"C{2 * k + 1}", "s")
    left.set_xlabel("training-set size D")
    left.set_ylabel("fraction of runs")
    left.set_ylim(-0.05, 1.05)
    left.grid(alpha=0.3)
    left.legend(fontsize=8)
    left.set_title("semi-grokking: fitted, then held-out accuracy rose and settled between 0.2 and 0.9", fontsize=9)
    size_of = {np.float32(r["fraction"]): r["size"] for r in info["rows"]}
    sizes = np.array([size_of[np.float32(f)] for f in arrays["fraction"]])
    _curves_by_size(right, traces["epochs"], traces["heldout_acc"], sizes, sorted(set(sizes)),
                    "held-out accuracy from scratch (median and each run)")
    right.set_xlabel("epoch")
    return fig


def draw_ungrok(results_dir, out_dir=None) -> list:
    """Draw the ungrokking figure from OUT/ungrok.json and .npz; the paths written."""
    root = Path(results_dir)
    arrays = read_npz(root / "ungrok.npz", ("heldout_acc", "fraction", "weight_decay", "had_generalized", "epochs"))
    path = figures_dir(results_dir, out_dir) / "ungrok.png"
    save_figure(ungrok_figure(read_json(root / "ungrok.json"), arrays), path)
    return [path]


def draw_semigrok(results_dir, out_dir=None) -> list:
    """Draw the semi-grokking figure from OUT/semigrok.json, .npz and the sweep's traces; the paths written."""
    root = Path(results_dir)
    arrays = read_npz(root / "semigrok.npz", ("fraction", "weight_decay", "semi_grokked"))
    traces = read_npz(root / "semigrok" / "traces.npz", ("epochs", "heldout_acc"))
    path = figures_dir(results_dir, out_dir) / "semigrok.png"
    save_figure(semigrok_figure(read_json(root / "semigrok.json"), arrays, traces), path)
    return [path]
