"""Figures of a finished sweep, drawn from its saved files alone (never jax, never training).

The outcome fractions with their intervals, final loss against weight norm, and accuracy curves by outcome;
`draw_all` adds the LLC figures (`grokjax.figures.llc`) when estimates are saved beside the results.
"""

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from grokjax.analysis.outcomes import category_names
from grokjax.figures.common import (CI_NAMES, diverged_note, field_arrays, figures_dir, outcome_colours, save_figure,
                                    seed_outcomes, versus)
from grokjax.figures.llc import draw_llc
from grokjax.figures.measures import draw_measures
from grokjax.figures.perturb import draw_perturbations
from grokjax.figures.variation import draw_variation
from grokjax.run.results import load_sweep
from grokjax.run.grid import MANY_POINTS, point_labels

FIGURE_NAMES = ("outcome_fractions", "loss_vs_weight_norm", "accuracy_curves")


def _fractions(rows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The fractions of outcome `rows` (summary entries) and their interval's distances below and above."""
    frac, low, high = field_arrays(rows, ("fraction", "ci_low", "ci_high"), missing=0.0)
    return frac, np.clip(frac - low, 0, None), np.clip(high - frac, 0, None)


def outcome_fractions(sweep: dict) -> Figure:
    """Bar chart of the fraction of seeds in each outcome, with its confidence interval and seed count;
    for a hyperparameter grid, one bar per grid point in each outcome, or beyond `MANY_POINTS` grid points one
    line per outcome against the grid point. Fractions are of the seeds that did not diverge; the diverged seeds
    are counted in the title."""
    summary = sweep["outcome"]
    points = summary.get("grid", [summary])
    names = [r["outcome"] for r in points[0]["outcomes"]]
    colours = outcome_colours(names)
    if len(points) > MANY_POINTS:
        fig, ax = _fractions_by_point(points, names, colours)
    else:
        fig, ax = _fractions_by_outcome(points, names, colours)
    method = CI_NAMES.get(summary.get("ci_method", points[0]["ci_method"]), points[0]["ci_method"])
    ax.set_ylabel(f"fraction of seeds\n(error bars: {round(100 * points[0]['ci_level'])}% {method} CI)")
    grid = f" at each of {len(points)} grid points" if len(points) > 1 else ""
    diverged = sum(p.get("n_diverged", 0) for p in points)
    apart = f"\n{diverged} diverged (non-finite loss or parameters), left out of the fractions" if diverged else ""
    ax.set_title(f"Which group each seed grokked: {versus(points[0]['groups'])}, {points[0]['n_seeds']} seeds{grid}{apart}")
    ax.grid(axis="y", alpha=0.3)
    return fig


def _fractions_by_point(points, names, colours):
    """One line per outcome across the grid points (many points: bars would be too many to read)."""
    fig = Figure(figsize=(max(7.0, 3 + 0.35 * len(points)), 4.8), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(points))
    shift = 0.25 / max(len(names) - 1, 1)
    for k, name in enumerate(names):
        frac, low, high = _fractions([p["outcomes"][k] for p in points])
        ax.errorbar(x + (k - (len(names) - 1) / 2) * shift, frac, yerr=[low, high], fmt="o-", ms=4, capsize=2,
                    color=colours[name], label=name)
    ax.set_xticks(x, point_labels(points), rotation=60, ha="right", fontsize=7)
    ax.set_ylim(-0.02, 1.05)
    ax.set_xlabel("grid point")
    fig.legend(title="outcome", fontsize=8, loc="outside right upper")
    return fig, ax


def _fractions_by_outcome(points, names, colours):
    """Bars: one group per outcome, one bar per grid point in it."""
    width = 0.8 / len(points)
    fig = Figure(figsize=(1.8 + 1.7 * len(names) * max(1, len(points) / 2), 4.2), layout="constrained")
    ax = fig.add_subplot()
    top, labels = 0.0, point_labels(points)
    for j, point in enumerate(points):
        rows = point["outcomes"]
        frac, low, high = _fractions(rows)
        x = np.arange(len(rows)) + (j - (len(points) - 1) / 2) * width
        label = labels[j] if len(points) > 1 else None
        ax.bar(x, frac, width * 0.95, color=[colours[n] for n in names] if label is None else f"C{j}",
               yerr=[low, high], capsize=5 / len(points), ecolor="black", label=label)
        for xi, f, h, r in zip(x, frac, high, rows):
            ax.annotate(f"{r['count']}", (xi, f + h), xytext=(0, 3), textcoords="offset points", ha="center",
                        va="bottom", fontsize=10 if len(points) == 1 else 7)
        top = max(top, float(np.max(frac + high)))
    ax.set_xticks(np.arange(len(names)), names)
    ax.set_ylim(0, min(1.0, top) * 1.12 + 0.01)
    ax.set_xlabel("outcome (number above the bar: seeds)")
    if len(points) > 1:
        ax.legend(title="grid point", fontsize=8)
    return fig, ax


def loss_vs_weight_norm(sweep: dict) -> Figure:
    """Final training loss (log scale) against final weight norm, one colour per outcome."""
    seeds, group_names = sweep["seeds"], sweep["group_names"]
    labels = seed_outcomes(seeds["grokked"], group_names, sweep.get("diverged"))
    norm, loss = seeds["final_weight_norm"], seeds["final_train_loss"]
    shown = np.isfinite(norm) & np.isfinite(loss) & (loss > 0) & (labels != "diverged")
    names = category_names(group_names)
    colours = outcome_colours(names)
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
    ax.set_title(f"{versus(group_names)}: loss and weight norm after {int(epochs[-1])} epochs")
    hidden = int(np.sum(~shown & (labels != "diverged")))
    notes = [n for n in (diverged_note(labels), f"{hidden} seeds with zero loss not shown" if hidden else "") if n]
    if notes:
        ax.text(0.01, 0.01, "; ".join(notes), transform=ax.transAxes, fontsize=8, va="bottom")
    ax.grid(alpha=0.3, which="both")
    fig.legend(title="outcome (seeds)", loc="outside lower center", ncols=len(present))
    return fig


def accuracy_curves(sweep: dict) -> Figure:
    """Per group, full-table accuracy against epoch: median and 25-75% band of the seeds of each outcome."""
    traces, group_names, threshold = sweep["traces"], sweep["group_names"], sweep["threshold"]
    labels = seed_outcomes(sweep["seeds"]["grokked"], group_names, sweep.get("diverged"))
    names = [n for n in category_names(group_names) if np.any(labels == n)]  # diverged runs have no outcome
    colours = outcome_colours(category_names(group_names))
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
    note = diverged_note(labels)
    fig.suptitle("Median and 25-75% band over the seeds of each outcome" + (f"\n({note})" if note else ""))
    fig.legend(*axes[0].get_legend_handles_labels(), title="outcome (seeds)", loc="outside right upper")
    return fig


def draw_all(results_dir, out_dir=None) -> list[Path]:
    """Draw every figure of the sweep in `results_dir` into `out_dir` (default RESULTS_DIR/figures), and those of
    each analysis saved beside the results (LLC estimates, generalization measures, perturbation sweeps, total variation); returns the paths."""
    sweep = load_sweep(results_dir)
    out = figures_dir(sweep["dir"], out_dir)
    paths = []

    def save(name: str, fig: Figure) -> None:
        paths.append(out / f"{name}.png")
        save_figure(fig, paths[-1])

    for name, draw in zip(FIGURE_NAMES, (outcome_fractions, loss_vs_weight_norm, accuracy_curves)):
        save(name, draw(sweep))
    draw_llc(sweep, save)
    draw_measures(sweep, save)
    draw_perturbations(sweep, save)
    draw_variation(sweep, save)
    return paths
