"""Figures of a finished sweep, drawn from its saved files alone.

Only numpy, JSON and matplotlib are used (never jax, never training), so
figures can be redrawn anywhere the results directory can be read. Figures are
built on `matplotlib.figure.Figure` directly: no pyplot, no global state.
"""

import json
import os
import zipfile
from itertools import product
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from grokjax.errors import UserError
from grokjax.outcomes import category_names

RESULT_FILES = ("config.json", "traces.npz", "seeds.npz", "outcome.json")
FIGURE_NAMES = ("outcome_fractions", "loss_vs_weight_norm", "accuracy_curves")
NEEDED = {"traces": ("epochs", "group_acc"), "seeds": ("grokked", "final_train_loss", "final_weight_norm")}
DPI = 150
CI_NAMES = {"wilson": "Wilson score", "exact": "Clopper-Pearson"}


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
    """Bar chart of the fraction of seeds in each outcome, with its confidence interval and seed count."""
    summary = sweep["outcome"]
    rows = summary["outcomes"]
    names = [r["outcome"] for r in rows]
    frac = np.array([r["fraction"] for r in rows])
    low = np.clip(frac - np.array([r["ci_low"] for r in rows]), 0, None)
    high = np.clip(np.array([r["ci_high"] for r in rows]) - frac, 0, None)
    colours = _colours(names)

    fig = Figure(figsize=(1.8 + 1.7 * len(rows), 4.2), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(rows))
    ax.bar(x, frac, color=[colours[n] for n in names], yerr=[low, high], capsize=5, ecolor="black")
    for xi, f, h, r in zip(x, frac, high, rows):
        ax.annotate(f"{r['count']}", (xi, f + h), xytext=(0, 3), textcoords="offset points", ha="center", va="bottom")
    ax.set_xticks(x, names)
    ax.set_ylim(0, min(1.0, float(np.max(frac + high))) * 1.12 + 0.01)
    ax.set_xlabel("outcome (number above the bar: seeds)")
    method = CI_NAMES.get(summary["ci_method"], summary["ci_method"])
    ax.set_ylabel(f"fraction of seeds\n(error bars: {round(100 * summary['ci_level'])}% {method} CI)")
    ax.set_title(f"Which group each seed grokked: {_versus(summary['groups'])}, {summary['n_seeds']} seeds")
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


def _save(fig: Figure, path: Path) -> None:
    """Write the PNG beside its final name and rename it into place, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.png")
    try:
        fig.savefig(tmp, format="png", dpi=DPI)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def draw_all(results_dir, out_dir=None) -> list[Path]:
    """Draw every figure of the sweep in `results_dir` into `out_dir` (default RESULTS_DIR/figures); returns the paths."""
    sweep = load_sweep(results_dir)
    out = Path(out_dir) if out_dir is not None else sweep["dir"] / "figures"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"Cannot create the figures directory {out}: {e.strerror}.") from e
    paths = []
    for name, draw in zip(FIGURE_NAMES, (outcome_fractions, loss_vs_weight_norm, accuracy_curves)):
        path = out / f"{name}.png"
        _save(draw(sweep), path)
        paths.append(path)
    return paths
