"""Figures of a finished sweep, drawn from its saved files alone.

Only numpy, scipy, JSON and matplotlib are used (never jax, never training),
so figures can be redrawn anywhere the results directory can be read. Figures
are built on `matplotlib.figure.Figure` directly: no pyplot, no global state.
LLC figures are drawn when experiments/llc.py has saved estimates beside the
results (`llc.npz`, `llc_checkpoints.npz`, `llc_calibration.npz`, and the same
with the prefix `behavioral_llc`).
"""

import json
import os
import zipfile
from itertools import product
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from scipy.stats import rankdata

from grokjax.errors import UserError
from grokjax.outcomes import category_names

RESULT_FILES = ("config.json", "traces.npz", "seeds.npz", "outcome.json")
FIGURE_NAMES = ("outcome_fractions", "loss_vs_weight_norm", "accuracy_curves")
NEEDED = {"traces": ("epochs", "group_acc"), "seeds": ("grokked", "final_train_loss", "final_weight_norm")}
DPI = 150
CI_NAMES = {"wilson": "Wilson score", "exact": "Clopper-Pearson"}
LLC_KINDS = {"llc": "LLC", "behavioral_llc": "behavioral LLC"}
"""Saved estimate files (without .npz) and their names in figures."""
LLC_NEEDED = {"": ("run", "llc", "n_diverged"), "_checkpoints": ("run", "epochs", "llc"),
              "_calibration": ("eps", "nbeta", "llc", "rhat", "stable", "rhat_max")}


def _read_json(path: Path) -> dict:
    """A JSON file of the results; unreadable or malformed becomes one sentence naming the file."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"Cannot read {path} as JSON: {e}.") from e


def _read_npz(path: Path, needed) -> dict:
    """All arrays of an .npz file, which must hold `needed`; anything else becomes one sentence naming the file."""
    try:
        with np.load(path) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, TypeError) as e:
        raise UserError(f"Cannot read {path}: it is not a numpy .npz archive of arrays.") from e
    absent = [k for k in needed if k not in arrays]
    if absent:
        raise UserError(f"{path} lacks the arrays {', '.join(absent)}; was it written by a sweep?")
    return arrays


def load_sweep(results_dir) -> dict:
    """The saved results of a sweep as one dict: config, traces, seeds, outcome, group_names, threshold, dir."""
    root = Path(results_dir)
    if not root.is_dir():
        raise UserError(f"No sweep results in {root}: the directory does not exist.")
    missing = [name for name in RESULT_FILES if not (root / name).is_file()]
    if missing:
        hint = " (an unfinished sweep? continue it with --resume)" if (root / "chunks").is_dir() else ""
        verb = "is" if len(missing) == 1 else "are"
        raise UserError(f"No sweep results in {root}: {', '.join(missing)} {verb} missing{hint}.")
    config = _read_json(root / "config.json")
    try:
        group_names = list(config["task"]["group_names"])
        threshold = float(config["sweep"]["grok_threshold"])
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"{root / 'config.json'} has no task.group_names or sweep.grok_threshold.") from e
    return {"dir": root, "config": config, "traces": _read_npz(root / "traces.npz", NEEDED["traces"]),
            "seeds": _read_npz(root / "seeds.npz", NEEDED["seeds"]), "outcome": _read_json(root / "outcome.json"),
            "group_names": group_names, "threshold": threshold}


def seed_outcomes(grokked: np.ndarray, group_names) -> np.ndarray:
    """Each seed's outcome name ('both', 'S(4) only', ...) from its (seeds, groups) grokked booleans."""
    grokked = np.asarray(grokked, dtype=bool)
    if grokked.ndim != 2 or grokked.shape[1] != len(group_names):
        raise ValueError(f"grokked has shape {grokked.shape}, expected (seeds, {len(group_names)}).")
    subsets = np.array(list(product((True, False), repeat=len(group_names))))
    match = np.all(grokked[:, None, :] == subsets[None, :, :], axis=2)
    return np.array(category_names(group_names))[np.argmax(match, axis=1)]


def _colours(names) -> dict:
    """One fixed colour per outcome, shared by all figures; the outcome with no group grokked is grey."""
    return {name: ("0.55" if i == len(names) - 1 else f"C{i}") for i, name in enumerate(names)}


def _versus(group_names) -> str:
    """'S(4) vs times(A(4),Z(2))': the groups competing in the sweep, for titles."""
    return " vs ".join(group_names)


def outcome_fractions(sweep: dict) -> Figure:
    """Bar chart of the fraction of seeds in each outcome, with its confidence interval and seed count;
    for a hyperparameter grid, one bar per grid point in each outcome."""
    summary = sweep["outcome"]
    points = summary.get("grid", [summary])
    names = [r["outcome"] for r in points[0]["outcomes"]]
    colours = _colours(names)
    width = 0.8 / len(points)
    fig = Figure(figsize=(1.8 + 1.7 * len(names) * max(1, len(points) / 2), 4.2), layout="constrained")
    ax = fig.add_subplot()
    top = 0.0
    for j, point in enumerate(points):
        rows = point["outcomes"]
        frac = np.array([r["fraction"] for r in rows])
        low = np.clip(frac - np.array([r["ci_low"] for r in rows]), 0, None)
        high = np.clip(np.array([r["ci_high"] for r in rows]) - frac, 0, None)
        x = np.arange(len(rows)) + (j - (len(points) - 1) / 2) * width
        label = f"lr {point['lr']:g}, wd {point['weight_decay']:g}" if "lr" in point else None
        ax.bar(x, frac, width * 0.95, color=[colours[n] for n in names] if label is None else f"C{j}",
               yerr=[low, high], capsize=5 / len(points), ecolor="black", label=label)
        for xi, f, h, r in zip(x, frac, high, rows):
            ax.annotate(f"{r['count']}", (xi, f + h), xytext=(0, 3), textcoords="offset points", ha="center",
                        va="bottom", fontsize=10 if len(points) == 1 else 7)
        top = max(top, float(np.max(frac + high)))
    ax.set_xticks(np.arange(len(names)), names)
    ax.set_ylim(0, min(1.0, top) * 1.12 + 0.01)
    ax.set_xlabel("outcome (number above the bar: seeds)")
    method = CI_NAMES.get(summary.get("ci_method", points[0]["ci_method"]), points[0]["ci_method"])
    ax.set_ylabel(f"fraction of seeds\n(error bars: {round(100 * points[0]['ci_level'])}% {method} CI)")
    grid = f" at each of {len(points)} grid points" if len(points) > 1 else ""
    ax.set_title(f"Which group each seed grokked: {_versus(points[0]['groups'])}, {points[0]['n_seeds']} seeds{grid}")
    if len(points) > 1:
        ax.legend(title="grid point", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return fig


def loss_vs_weight_norm(sweep: dict) -> Figure:
    """Final training loss (log scale) against final weight norm, one colour per outcome."""
    seeds, group_names = sweep["seeds"], sweep["group_names"]
    labels = seed_outcomes(seeds["grokked"], group_names)
    norm, loss = seeds["final_weight_norm"], seeds["final_train_loss"]
    shown = np.isfinite(norm) & np.isfinite(loss) & (loss > 0)
    names = category_names(group_names)
    colours = _colours(names)
    counts = {n: int(np.sum(labels == n)) for n in names}

    fig = Figure(figsize=(7.5, 4.5), layout="constrained")
    ax = fig.add_subplot()
    present = [n for n in names if counts[n]]
    for name in present:
        sel = (labels == name) & shown
        # Rarer outcomes are drawn higher, so the common one does not hide them.
        ax.scatter(norm[sel], loss[sel], s=14, alpha=0.7, color=colours[name], edgecolors="none",
                   zorder=3 - counts[name] / len(labels), label=f"{name} ({counts[name]})")
    ax.set_yscale("log")
    ax.set_xlabel("final weight norm")
    ax.set_ylabel("final training loss (log scale)")
    epochs = sweep["traces"]["epochs"]
    ax.set_title(f"{_versus(group_names)}: loss and weight norm after {int(epochs[-1])} epochs")
    if not shown.all():
        ax.text(0.01, 0.01, f"{int(np.sum(~shown))} seeds with non-finite or zero loss not shown",
                transform=ax.transAxes, fontsize=8, va="bottom")
    ax.grid(alpha=0.3, which="both")
    fig.legend(title="outcome (seeds)", loc="outside lower center", ncols=len(present))
    return fig


def accuracy_curves(sweep: dict) -> Figure:
    """Per group, full-table accuracy against epoch: median and 25-75% band of the seeds of each outcome."""
    traces, group_names, threshold = sweep["traces"], sweep["group_names"], sweep["threshold"]
    labels = seed_outcomes(sweep["seeds"]["grokked"], group_names)
    names = [n for n in category_names(group_names) if np.any(labels == n)]
    colours = _colours(category_names(group_names))
    epochs, acc = traces["epochs"], traces["group_acc"]

    fig = Figure(figsize=(0.6 + 4.6 * len(group_names), 4.4), layout="constrained")
    axes = fig.subplots(1, len(group_names), sharey=True, squeeze=False)[0]
    for g, (ax, group) in enumerate(zip(axes, group_names)):
        for name in names:
            curves = acc[labels == name, :, g]
            q25, median, q75 = np.nanpercentile(curves, [25, 50, 75], axis=0)
            ax.fill_between(epochs, q25, q75, color=colours[name], alpha=0.25, linewidth=0)
            ax.plot(epochs, median, color=colours[name], label=f"{name} ({len(curves)})")
        ax.axhline(threshold, color="black", linestyle="--", linewidth=0.8, label=f"grok threshold {threshold:g}")
        ax.set_title(f"{group}: full-table accuracy")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy on the group's whole table")
    axes[0].set_ylim(0, 1.03)
    fig.suptitle("Median and 25-75% band over the seeds of each outcome")
    fig.legend(*axes[0].get_legend_handles_labels(), title="outcome (seeds)", loc="outside right upper")
    return fig


def load_llc(results_dir, name: str) -> dict | None:
    """The arrays of `RESULTS_DIR/name.npz` saved by experiments/llc.py (name e.g. 'llc_checkpoints'), or None."""
    path = Path(results_dir) / f"{name}.npz"
    if not path.is_file():
        return None
    suffix = next(s for s in sorted(LLC_NEEDED, key=len, reverse=True) if name.endswith(s))
    return _read_npz(path, LLC_NEEDED[suffix])


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
    labels = seed_outcomes(sweep["seeds"]["grokked"][llc["run"]], sweep["group_names"])
    names = category_names(sweep["group_names"])
    return labels, [n for n in names if np.any(labels == n)], _colours(names)


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
    ax.set_title(f"{_versus(sweep['group_names'])}: {label} of each seed by outcome")
    lost = int(np.sum(~finite))
    if lost:
        ax.text(0.01, 0.98, f"{lost} seeds with every chain diverged not shown", transform=ax.transAxes,
                fontsize=8, va="top")
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
    fig.suptitle(f"{_versus(sweep['group_names'])}: {label} against final loss and weight norm")
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


def save_figure(fig: Figure, path: Path) -> None:
    """Write the PNG beside its final name and rename it into place, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.png")
    try:
        fig.savefig(tmp, format="png", dpi=DPI)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def figures_dir(results_root: Path, out_dir=None) -> Path:
    """The directory figures go to (`out_dir`, default RESULTS_DIR/figures), created if needed."""
    out = Path(out_dir) if out_dir is not None else Path(results_root) / "figures"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"Cannot create the figures directory {out}: {e.strerror}.") from e
    return out


def draw_all(results_dir, out_dir=None) -> list[Path]:
    """Draw every figure of the sweep in `results_dir` into `out_dir` (default RESULTS_DIR/figures), the LLC ones
    for each estimate saved beside the results; returns the paths."""
    sweep = load_sweep(results_dir)
    out = figures_dir(sweep["dir"], out_dir)
    paths = []

    def save(name: str, fig: Figure) -> None:
        paths.append(out / f"{name}.png")
        save_figure(fig, paths[-1])

    for name, draw in zip(FIGURE_NAMES, (outcome_fractions, loss_vs_weight_norm, accuracy_curves)):
        save(name, draw(sweep))
    for kind, label in LLC_KINDS.items():
        if (llc := load_llc(sweep["dir"], kind)) is not None:
            save(f"{kind}_by_outcome", llc_by_outcome(sweep, llc, label))
            save(f"{kind}_vs_loss_and_norm", llc_vs_loss_and_norm(sweep, llc, label))
        if (over_training := load_llc(sweep["dir"], f"{kind}_checkpoints")) is not None:
            save(f"{kind}_over_training", llc_over_training(sweep, over_training, label))
        if (cal := load_llc(sweep["dir"], f"{kind}_calibration")) is not None:
            save(f"{kind}_calibration", llc_calibration(cal, label))
    return paths
