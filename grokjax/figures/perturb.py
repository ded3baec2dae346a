"""Figures of perturbation sweeps (`perturb*.npz` beside a sweep), drawn from the saved arrays alone.

One row per perturbed run (the first `MAX_RUNS`): the outcome fractions of its copies, with Wilson 95% intervals,
against the noise scale (or the perturbation epoch); the final loss on each group (median and quartiles of the
copies; box plots against the epoch, as the study drew them); and the unperturbed run's full-table accuracy
curves beside them, the perturbation epochs marked.
"""

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from grokjax.analysis.outcomes import category_names, outcome_counts, proportion
from grokjax.figures.common import outcome_colours, seed_outcomes
from grokjax.run.results import read_npz

MAX_RUNS = 6
NEEDED = ("run", "epochs", "scales", "grokked", "group_loss", "distance", "diverged")


def perturbation_files(root: Path) -> list[Path]:
    return sorted(Path(root).glob("perturb*.npz"))


def _fractions(grokked: np.ndarray, ok: np.ndarray, group_names) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(outcomes, points) fraction, low and high of copies (last axis) with each outcome, over finite copies."""
    frac, low, high = (np.full((len(category_names(group_names)), len(ok)), np.nan) for _ in range(3))
    for p in range(len(ok)):
        n = int(ok[p].sum())
        if not n:
            continue
        for o, k in enumerate(outcome_counts(grokked[p][ok[p]])):
            ci = proportion(int(k), n)
            frac[o, p], low[o, p], high[o, p] = ci["fraction"], ci["ci_low"], ci["ci_high"]
    return frac, low, high


def perturbation_figure(sweep: dict, saved: dict, name: str) -> Figure:
    """The figure of one saved perturbation sweep: against the scale if it has several scales, else the epoch."""
    group_names, traces = sweep["group_names"], sweep["traces"]
    by_scale = len(saved["scales"]) > 1
    names = category_names(group_names)
    colours = outcome_colours(names)
    runs = saved["run"][:MAX_RUNS]
    own = seed_outcomes(sweep["seeds"]["grokked"][runs], group_names, sweep["diverged"][runs])
    if by_scale:  # the first epoch's scale sweep; zero drawn at the left end of the log axis
        scales = saved["scales"]
        positive = scales[scales > 0]
        x = np.where(scales > 0, scales, positive.min() / 4 if positive.size else 1.0)
        pick = lambda a: a[:, 0]  # (runs, scales, copies, ...)
        xlabel = f"noise scale (perturbed at epoch {saved['epochs'][0]}; 0 drawn at the left end)"
    else:
        x = saved["epochs"].astype(float)
        pick = lambda a: a[:, :, 0]  # (runs, epochs, copies, ...)
        xlabel = f"perturbation epoch (scale {saved['scales'][0]:g})"
    grokked, loss, ok = pick(saved["grokked"]), pick(saved["group_loss"]), ~pick(saved["diverged"])

    fig = Figure(figsize=(15, 3.2 * len(runs) + 0.8), layout="constrained")
    axes = fig.subplots(len(runs), 3, squeeze=False)
    for r, run in enumerate(runs):
        ax_frac, ax_loss, ax_curve = axes[r]
        frac, low, high = _fractions(grokked[r], ok[r], group_names)
        for o, outcome in enumerate(names):
            if np.nanmax(frac[o], initial=0) > 0:
                ax_frac.plot(x, frac[o], marker="o", markersize=3, color=colours[outcome], label=outcome)
                ax_frac.fill_between(x, low[o], high[o], color=colours[outcome], alpha=0.2, linewidth=0)
        ax_frac.set_ylim(-0.03, 1.03)
        ax_frac.set_ylabel(f"run {run} ({own[r]})\nfraction of copies")
        for g, group in enumerate(group_names):
            values = np.where(ok[r], loss[r, ..., g], np.nan)  # (points, copies)
            if by_scale:
                q25, median, q75 = np.nanpercentile(values, [25, 50, 75], axis=1)
                ax_loss.plot(x, median, color=f"C{g}", label=group)
                ax_loss.fill_between(x, q25, q75, color=f"C{g}", alpha=0.2, linewidth=0)
            else:
                width = 0.35 * (np.min(np.diff(x)) if len(x) > 1 else 1.0)
                shift = (g - (len(group_names) - 1) / 2) * width
                box = ax_loss.boxplot([v[np.isfinite(v)] for v in values], positions=x + shift, widths=width,
                                      manage_ticks=False, patch_artist=True, showfliers=False)
                for patch in box["boxes"]:
                    patch.set(facecolor=f"C{g}", alpha=0.5)
                ax_loss.plot([], [], color=f"C{g}", label=group)
        ax_loss.set_yscale("log")
        ax_loss.set_ylabel("final loss on the group's table")
        for g, group in enumerate(group_names):
            ax_curve.plot(traces["epochs"], traces["group_acc"][run, :, g], color=f"C{g}", label=group)
        for epoch in saved["epochs"]:
            ax_curve.axvline(epoch, color="black", linewidth=0.6, alpha=0.4)
        ax_curve.set_ylim(-0.03, 1.03)
        ax_curve.set_ylabel("unperturbed full-table accuracy")
        for ax in (ax_frac, ax_loss):
            ax.set_xscale("log" if by_scale else "linear")
        for ax in axes[r]:
            ax.grid(alpha=0.3)
    for ax, label in zip(axes[-1], (xlabel, xlabel, "epoch")):
        ax.set_xlabel(label)
    axes[0, 0].legend(title="outcome of the copies", fontsize=8)
    axes[0, 1].legend(fontsize=8)
    axes[0, 2].legend(fontsize=8)
    n_copies = saved["grokked"].shape[3]
    shown = f" (first {MAX_RUNS} of {len(saved['run'])} runs)" if len(saved["run"]) > MAX_RUNS else ""
    fig.suptitle(f"{name}: {n_copies} perturbed copies per point, trained to the end{shown}")
    return fig


def draw_perturbations(sweep: dict, save) -> None:
    """The figure of every perturbation sweep saved beside `sweep`, each passed to `save(name, figure)`."""
    for path in perturbation_files(sweep["dir"]):
        saved = read_npz(path, NEEDED, writer="experiments/perturb.py")
        save(path.stem, perturbation_figure(sweep, saved, path.stem))
