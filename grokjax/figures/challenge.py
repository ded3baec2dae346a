"""Figures of a modular-challenge leaderboard (`leaderboard.json` and `.npz`, and the sweeps beside them), from saved
arrays alone: the distribution of steps to 95% validation accuracy per method (every run, not just the median), and
the validation-accuracy curves of each method's best setting."""

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from grokjax.figures.common import figures_dir, save_figure
from grokjax.run.results import read_json, read_npz


def is_challenge_results(results_dir) -> bool:
    return (Path(results_dir) / "leaderboard.json").is_file()


def steps_distribution(board: dict, arrays: dict) -> Figure:
    """Every run's steps to 95% per method (best setting), jittered; runs that never got there drawn at the budget in
    grey; the median with its bootstrap interval as a black bar."""
    methods, budget = list(board["methods"]), board["budget_steps"]
    rng = np.random.default_rng(0)
    fig = Figure(figsize=(1.6 * len(methods) + 2, 4.5), layout="constrained")
    ax = fig.subplots()
    for i, method in enumerate(methods):
        row = board["methods"][method]
        steps = arrays[f"{method}/{row['setting']}/steps_95"]
        steps = steps[steps != -2]
        x = i + rng.uniform(-0.25, 0.25, len(steps))
        ax.scatter(x[steps >= 0], steps[steps >= 0], s=8, alpha=0.6, color=f"C{i}")
        ax.scatter(x[steps < 0], np.full(int((steps < 0).sum()), budget), s=8, alpha=0.6, color="0.6", marker="x")
        s = row["steps_95"]
        ax.errorbar(i, s["median_steps"], yerr=[[s["median_steps"] - s["median_low"]], [s["median_high"] -
                                                                                         s["median_steps"]]],
                    color="black", capsize=6, marker="_", markersize=20)
    ax.axhline(budget, color="0.6", linestyle="--", linewidth=0.8, label=f"budget ({budget} steps): never reached")
    ax.set_xticks(range(len(methods)), methods, rotation=20)
    ax.set_ylabel("steps to 95% validation accuracy")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.suptitle("Steps to grok per method (best setting): every run, median and 95% bootstrap interval")
    return fig


def validation_curves(board: dict, root: Path) -> Figure:
    """Median and 25-75% band of the validation accuracy of each method's best setting against steps."""
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.subplots()
    for i, (method, row) in enumerate(board["methods"].items()):
        traces = read_npz(root / row["dir"] / "traces.npz", ("epochs", "heldout_acc"))
        seeds = read_npz(root / row["dir"] / "seeds.npz", ("grid_index",))
        acc = traces["heldout_acc"][seeds["grid_index"] == row["grid_index"]]
        q25, median, q75 = np.nanpercentile(acc, [25, 50, 75], axis=0)
        ax.fill_between(traces["epochs"], q25, q75, color=f"C{i}", alpha=0.2, linewidth=0)
        ax.plot(traces["epochs"], median, color=f"C{i}", label=f"{method} ({len(acc)})")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("validation accuracy")
    ax.set_ylim(-0.03, 1.03)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle("Validation accuracy of each method's best setting: median and 25-75% band over seeds")
    return fig


def draw_challenge(results_dir, out_dir=None) -> list[Path]:
    root = Path(results_dir)
    board = read_json(root / "leaderboard.json")
    arrays = read_npz(root / "leaderboard.npz", (), writer="experiments/modular_challenge.py")
    out = figures_dir(root, out_dir)
    paths = [out / "challenge_steps.png", out / "challenge_curves.png"]
    save_figure(steps_distribution(board, arrays), paths[0])
    save_figure(validation_curves(board, root), paths[1])
    return paths
