"""Figures of the total variation of the function saved beside a sweep by experiments/variation.py (variation.npz),
drawn from the saved arrays alone: histograms of each run's sum over the window, by outcome, on train and on test.
"""

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from grokjax.analysis.outcomes import category_names
from grokjax.figures.common import diverged_note, outcome_colours, seed_outcomes, versus
from grokjax.run.results import read_npz

MEASURE_LABELS = {"l2": "L2 change of the logits", "kl": "KL(before || after)", "flip": "fraction of argmax flips"}
NEEDED = ("run", "epochs", "in_window", *(f"{m}_{s}_sum" for m in (*MEASURE_LABELS, "loss") for s in ("train", "test")))


def load_variation(results_dir) -> dict | None:
    """The arrays of RESULTS_DIR/variation.npz, or None if there is none."""
    path = Path(results_dir) / "variation.npz"
    return read_npz(path, NEEDED, "experiments/variation.py") if path.is_file() else None


def _bins(values: np.ndarray):
    """Shared bins for the finite `values`: geometric when all are positive and span over two decades."""
    values = values[np.isfinite(values)]
    n_bins = int(np.clip(np.sqrt(len(values)), 10, 60))
    if not len(values):
        return n_bins, False
    low, high = values.min(), values.max()
    if low > 0 and high / low > 100:
        return np.geomspace(low, high, n_bins + 1), True
    return np.histogram_bin_edges(values, bins=n_bins), False


def _histograms(ax, values: np.ndarray, labels: np.ndarray, present: list, colours: dict) -> None:
    """One step histogram per outcome of the runs' `values`, on shared bins, median in the legend."""
    bins, geometric = _bins(values)
    for name in present:
        chosen = values[(labels == name) & np.isfinite(values)]
        median = f", median {np.median(chosen):.3g}" if len(chosen) else ""
        ax.hist(chosen, bins=bins, histtype="step", linewidth=1.6, color=colours[name],
                label=f"{name} ({len(chosen)}{median})")
    if geometric:
        ax.set_xscale("log")
    ax.set_ylabel("runs")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def _outcomes(sweep: dict, var: dict) -> tuple[np.ndarray, list, dict]:
    """Outcome of each run of `var`, the outcomes present (diverged runs left out), and every outcome's colour."""
    runs = var["run"]
    labels = seed_outcomes(sweep["seeds"]["grokked"][runs], sweep["group_names"], sweep["diverged"][runs])
    names = category_names(sweep["group_names"])
    return labels, [n for n in names if np.any(labels == n)], outcome_colours(names)


def _window(var: dict) -> str:
    """'epochs 2000 to 3000 (100 intervals)': the window the sums run over."""
    inside, epochs = var["in_window"], var["epochs"]
    n = int(inside.sum())
    return f"epochs {epochs[:-1][inside][0]:g} to {epochs[1:][inside][-1]:g} ({n} interval{'s' if n != 1 else ''})"


def _title(fig: Figure, sweep: dict, var: dict, what: str, labels: np.ndarray) -> None:
    note = diverged_note(labels)
    fig.suptitle(f"{versus(sweep['group_names'])}: {what}, summed over {_window(var)}, by outcome"
                 + (f"\n{note}" if note else ""))


def variation_by_outcome(sweep: dict, var: dict) -> Figure:
    """Histograms by outcome of each run's total variation of its logits over the window: L2, KL and argmax flips
    (rows), on the training points and on the test points, the table minus the training points (columns)."""
    labels, present, colours = _outcomes(sweep, var)
    fig = Figure(figsize=(11, 10), layout="constrained")
    axes = fig.subplots(len(MEASURE_LABELS), 2)
    for row, (measure, label) in zip(axes, MEASURE_LABELS.items()):
        for ax, points in zip(row, ("train", "test")):
            _histograms(ax, var[f"{measure}_{points}_sum"], labels, present, colours)
            ax.set_xlabel(f"sum over the window of the mean {label}, {points} points")
    _title(fig, sweep, var, "total variation of the function", labels)
    return fig


def loss_variation_by_outcome(sweep: dict, var: dict) -> Figure:
    """Histograms by outcome of each run's sum over the window of |L_{t+1} - L_t|: the cross-entropy on the training
    points, and on the test points against each group's labels."""
    labels, present, colours = _outcomes(sweep, var)
    groups = sweep["group_names"]
    fig = Figure(figsize=(5 * (1 + len(groups)), 4.4), layout="constrained")
    axes = fig.subplots(1, 1 + len(groups))
    panels = [(var["loss_train_sum"], "training labels, train points")]
    panels += [(var["loss_test_sum"][:, g], f"{group} labels, test points") for g, group in enumerate(groups)]
    for ax, (values, what) in zip(axes, panels):
        _histograms(ax, values, labels, present, colours)
        ax.set_xlabel(f"sum of |change of the loss|, {what}")
    _title(fig, sweep, var, "total variation of the loss", labels)
    return fig


def draw_variation(sweep: dict, save) -> None:
    """The variation figures of the results saved beside `sweep`, if any, each passed to `save(name, figure)`."""
    if (var := load_variation(sweep["dir"])) is not None:
        save("variation_by_outcome", variation_by_outcome(sweep, var))
        save("loss_variation_by_outcome", loss_variation_by_outcome(sweep, var))
