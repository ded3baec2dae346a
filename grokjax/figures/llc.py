"""Figures of the LLC estimates saved beside a sweep by experiments/llc.py, drawn from the saved arrays alone.

`llc.npz`, `llc_checkpoints.npz`, `llc_calibration.npz` and the same with the prefix `behavioral_llc`.
"""

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from scipy.stats import rankdata

from grokjax.analysis.outcomes import category_names
from grokjax.figures.common import DIVERGED, diverged_note, outcome_colours, seed_outcomes, versus
from grokjax.run.results import load_sweep, read_npz

LLC_KINDS = {"llc": "LLC", "behavioral_llc": "behavioral LLC"}
"""Saved estimate files (without .npz) and their names in figures."""
LLC_NEEDED = {"": ("run", "llc", "n_diverged"), "_checkpoints": ("run", "epochs", "llc"),
              "_calibration": ("eps", "nbeta", "llc", "rhat", "stable", "rhat_max")}


def load_llc(results_dir, name: str) -> dict | None:
    """The arrays of `RESULTS_DIR/name.npz` saved by experiments/llc.py (name e.g. 'llc_checkpoints'), or None."""
    path = Path(results_dir) / f"{name}.npz"
    if not path.is_file():
        return None
    suffix = next(s for s in sorted(LLC_NEEDED, key=len, reverse=True) if name.endswith(s))
    return read_npz(path, LLC_NEEDED[suffix])


def _correlation(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Pearson and Spearman (rank) correlation of two samples; NaN with fewer than 3 points or no spread."""
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan"), float("nan")
    return float(np.corrcoef(x, y)[0, 1]), float(np.corrcoef(rankdata(x), rankdata(y))[0, 1])


def _llc_against(sweep: dict, llc: dict) -> dict:
    """Per quantity ('final train loss', 'final weight norm'): its values and the LLC of the seeds where both are
    finite (and the loss positive, as it is drawn on a log scale)."""
    seeds = sweep["seeds"]
    out = {}
    for name, key in (("final train loss", "final_train_loss"), ("final weight norm", "final_weight_norm")):
        x, y = seeds[key][llc["run"]], llc["llc"]
        ok = np.isfinite(x) & np.isfinite(y) & ((x > 0) if key == "final_train_loss" else True)
        if "diverged" in sweep:
            ok &= ~sweep["diverged"][llc["run"]]
        out[name] = (x, y, ok)
    return out


def llc_correlations(sweep: dict, llc: dict) -> dict:
    """Pearson (against log10 of the loss) and Spearman correlations of the LLC with final train loss and with
    final weight norm."""
    out = {}
    for name, (x, y, ok) in _llc_against(sweep, llc).items():
        xs = np.log10(x[ok]) if name == "final train loss" else x[ok]
        pearson, spearman = _correlation(xs, y[ok])
        out[name] = {"pearson": pearson, "spearman": spearman, "n": int(ok.sum())}
    return out


def llc_correlation_lines(results_dir) -> list[str]:
    """One printed line per saved LLC estimate and quantity, e.g. 'LLC vs final train loss: Pearson r = ...'."""
    sweep, lines = load_sweep(results_dir), []
    for kind, label in LLC_KINDS.items():
        llc = load_llc(results_dir, kind)
        if llc is None:
            continue
        for name, c in llc_correlations(sweep, llc).items():
            pearson_of = "log10 loss" if name == "final train loss" else "values"
            lines.append(f"{label} vs {name}: Pearson r = {c['pearson']:.3f} (of {pearson_of}), "
                         f"Spearman rho = {c['spearman']:.3f}, over {c['n']} seeds")
    return lines


def _llc_outcomes(sweep: dict, llc: dict) -> tuple[np.ndarray, list[str], dict]:
    """Outcome of each estimated seed, the outcomes present, and the colour of every outcome."""
    diverged = sweep["diverged"][llc["run"]] if "diverged" in sweep else None
    labels = seed_outcomes(sweep["seeds"]["grokked"][llc["run"]], sweep["group_names"], diverged)  # left out
    names = category_names(sweep["group_names"])
    return labels, [n for n in names if np.any(labels == n)], outcome_colours(names)


def llc_by_outcome(sweep: dict, llc: dict, label: str = "LLC") -> Figure:
    """Histogram of the LLC of the seeds of each outcome, on shared bins."""
    labels, present, colours = _llc_outcomes(sweep, llc)
    values = llc["llc"]
    finite = np.isfinite(values)
    n_bins = int(np.clip(np.sqrt(finite.sum()), 10, 60))
    bins = np.histogram_bin_edges(values[finite], bins=n_bins) if finite.any() else n_bins

    fig = Figure(figsize=(7.5, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for name in present:
        sel = values[(labels == name) & finite]
        median = f", median {np.median(sel):.3g}" if len(sel) else ""
        ax.hist(sel, bins=bins, histtype="step", linewidth=1.6, color=colours[name],
                label=f"{name} ({len(sel)}{median})")
    ax.set_xlabel(f"{label} (mean over chains)")
    ax.set_ylabel("seeds")
    ax.set_title(f"{versus(sweep['group_names'])}: {label} of each seed by outcome")
    lost = int(np.sum(~finite & (labels != DIVERGED)))
    notes = [n for n in (diverged_note(labels), f"{lost} seeds with every chain diverged not shown" if lost else "") if n]
    if notes:
        ax.text(0.01, 0.98, "; ".join(notes), transform=ax.transAxes, fontsize=8, va="top")
    ax.grid(alpha=0.3)
    ax.legend(title="outcome (seeds)", fontsize=8)
    return fig


def llc_vs_loss_and_norm(sweep: dict, llc: dict, label: str = "LLC") -> Figure:
    """The LLC against final training loss (log scale) and against final weight norm, one colour per outcome,
    with the correlations in the panel titles."""
    labels, present, colours = _llc_outcomes(sweep, llc)
    against = _llc_against(sweep, llc)
    corr = llc_correlations(sweep, llc)

    fig = Figure(figsize=(11, 4.6), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, (name, (x, y, ok)) in zip(axes, against.items()):
        for outcome in present:
            sel = ok & (labels == outcome)
            ax.scatter(x[sel], y[sel], s=14, alpha=0.7, color=colours[outcome], edgecolors="none",
                       label=f"{outcome} ({int(np.sum(labels == outcome))})")
        if name == "final train loss":
            ax.set_xscale("log")
        c = corr[name]
        ax.set_title(f"Pearson r = {c['pearson']:.2f}, Spearman rho = {c['spearman']:.2f} ({c['n']} seeds)",
                     fontsize=10)
        ax.set_xlabel(name + (" (log scale)" if name == "final train loss" else ""))
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel(label)
    fig.suptitle(f"{versus(sweep['group_names'])}: {label} against final loss and weight norm")
    fig.legend(*axes[0].get_legend_handles_labels(), title="outcome (seeds)", loc="outside lower center",
               ncols=max(1, len(present)))
    return fig


def llc_over_training(sweep: dict, llc: dict, label: str = "LLC") -> Figure:
    """The LLC at each checkpoint and each group's full-table accuracy against epoch: median and 25-75% band over
    the seeds of each outcome."""
    labels, present, colours = _llc_outcomes(sweep, llc)
    traces, group_names = sweep["traces"], sweep["group_names"]
    acc = traces["group_acc"][llc["run"]]

    fig = Figure(figsize=(7.5, 2.4 * (1 + len(group_names)) + 0.8), layout="constrained")
    axes = fig.subplots(1 + len(group_names), 1, sharex=True)
    curves = [(axes[0], llc["epochs"], llc["llc"], label)]
    curves += [(ax, traces["epochs"], acc[:, :, g], f"{group} accuracy")
               for g, (ax, group) in enumerate(zip(axes[1:], group_names))]
    for ax, epochs, values, ylabel in curves:
        for name in present:
            sel = values[labels == name]
            q25, median, q75 = np.nanpercentile(sel, [25, 50, 75], axis=0)
            ax.fill_between(epochs, q25, q75, color=colours[name], alpha=0.25, linewidth=0)
            ax.plot(epochs, median, color=colours[name], marker="o" if ax is axes[0] else None, markersize=3,
                    label=f"{name} ({len(sel)})")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    if np.nanmin(llc["llc"], initial=0) < 0:  # early checkpoints, far from a minimum, can be thousands below zero
        axes[0].set_yscale("symlog", linthresh=10)
        axes[0].set_ylabel(f"{label} (symlog)")
        axes[0].text(0.99, 0.03, "below 0: w* is no local minimum", transform=axes[0].transAxes, fontsize=8,
                     ha="right", va="bottom")
    for ax in axes[1:]:
        ax.axhline(sweep["threshold"], color="black", linestyle="--", linewidth=0.8)
        ax.set_ylim(0, 1.03)
    axes[-1].set_xlabel("epoch")
    fig.suptitle(f"{label} and full-table accuracy over training (median and 25-75% band per outcome)")
    fig.legend(*axes[0].get_legend_handles_labels(), title="outcome (seeds)", loc="outside lower center",
               ncols=max(1, len(present)))
    return fig


def llc_calibration(cal: dict, label: str = "LLC") -> Figure:
    """The estimate (mean over the calibration seeds) and the largest split-R-hat against the step size, one line
    per nbeta; filled markers where the grid point is stable, hollow where it is not."""
    fig = Figure(figsize=(11, 4.4), layout="constrained")
    ax_llc, ax_rhat = fig.subplots(1, 2, sharex=True)
    eps = cal["eps"]
    llc_ok, rhat_ok = np.isfinite(cal["llc"]), np.isfinite(cal["rhat"])
    mean = np.where(llc_ok.any(-1), np.where(llc_ok, cal["llc"], 0).sum(-1) / np.maximum(llc_ok.sum(-1), 1), np.nan)
    worst_rhat = np.where(rhat_ok.any(-1), np.where(rhat_ok, cal["rhat"], -np.inf).max(-1), np.nan)
    for b, nbeta in enumerate(cal["nbeta"]):
        colour = f"C{b}"
        for ax, values in ((ax_llc, mean[:, b]), (ax_rhat, worst_rhat[:, b])):
            ax.plot(eps, values, color=colour, label=f"nbeta = {nbeta:g}")
            stable = cal["stable"][:, b]
            ax.scatter(eps[stable], values[stable], color=colour, zorder=3)
            ax.scatter(eps[~stable], values[~stable], facecolors="white", edgecolors=colour, zorder=3)
    ax_rhat.axhline(float(cal["rhat_max"]), color="black", linestyle="--", linewidth=0.8, label="R-hat limit")
    for ax in (ax_llc, ax_rhat):
        ax.set_xscale("log")
        ax.set_xlabel("SGLD step size eps (log scale)")
        ax.grid(alpha=0.3, which="both")
    ax_llc.set_ylabel(f"{label}, mean over {cal['llc'].shape[-1]} seeds")
    ax_rhat.set_ylabel("largest split-R-hat over the seeds")
    fig.suptitle("Calibration: filled points are stable (no divergence, R-hat within the limit, on a plateau in eps)")
    ax_rhat.legend(fontsize=8)
    return fig


def draw_llc(sweep: dict, save) -> None:
    """Every LLC figure of the estimates saved beside `sweep`, each passed to `save(name, figure)`."""
    for kind, label in LLC_KINDS.items():
        if (llc := load_llc(sweep["dir"], kind)) is not None:
            save(f"{kind}_by_outcome", llc_by_outcome(sweep, llc, label))
            save(f"{kind}_vs_loss_and_norm", llc_vs_loss_and_norm(sweep, llc, label))
        if (over_training := load_llc(sweep["dir"], f"{kind}_checkpoints")) is not None:
            save(f"{kind}_over_training", llc_over_training(sweep, over_training, label))
        if (cal := load_llc(sweep["dir"], f"{kind}_calibration")) is not None:
            save(f"{kind}_calibration", llc_calibration(cal, label))
