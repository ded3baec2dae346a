"""Figures of a transplant experiment (`transplant.npz` and `.json` of experiments/transplant.py), from the saved
arrays alone: per direction, the source group's full-table accuracy after the transplant for the runs that
ungrokked (regrokking ones apart) and for a sample of those that stayed grokked, beside the training
(intersection) accuracy."""

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from grokjax.figures.common import figures_dir, save_figure
from grokjax.run.results import read_json, read_npz

MAX_CURVES = 20


def is_transplant_results(results_dir) -> bool:
    return (Path(results_dir) / "transplant.json").is_file()


def transplant_curves(arrays: dict, info: dict) -> Figure:
    """One column per direction: the source group's accuracy (top) and the intersection's (bottom) over the epochs
    after the transplant, ungrokked runs in red, regrokked ones in green, runs that stayed grokked in grey."""
    names, threshold, epochs = info["groups"], info["threshold"], arrays["epochs"]
    fig = Figure(figsize=(6 * len(names), 7), layout="constrained")
    axes = fig.subplots(2, len(names), sharex=True, squeeze=False)
    for g, name in enumerate(names):
        source, train = arrays[f"{g}/group_acc"][..., g], arrays[f"{g}/train_acc"]
        kinds = (("stayed grokked", arrays[f"{g}/stays"], "0.6"),
                 ("ungrokked", arrays[f"{g}/ungrokked"] & ~arrays[f"{g}/regrokked"], "C3"),
                 ("regrokked", arrays[f"{g}/regrokked"], "C2"))
        for label, mask, colour in kinds:
            runs = np.flatnonzero(mask)[:MAX_CURVES]
            for i, run in enumerate(runs):
                extra = {"label": f"{label} ({int(mask.sum())})"} if i == 0 else {}
                axes[0, g].plot(epochs, source[run], color=colour, linewidth=0.8, alpha=0.7, **extra)
                axes[1, g].plot(epochs, train[run], color=colour, linewidth=0.8, alpha=0.7)
        axes[0, g].axhline(threshold, color="black", linestyle="--", linewidth=0.8)
        axes[0, g].set_title(f"trained on {name}'s table, then on the intersection")
        axes[0, g].set_ylabel(f"accuracy on {name}'s whole table")
        axes[1, g].set_ylabel("accuracy on the intersection (training)")
        axes[1, g].set_xlabel("epoch (the transplant at the first)")
        if axes[0, g].get_legend_handles_labels()[0]:
            axes[0, g].legend(fontsize=8)
        for ax in axes[:, g]:
            ax.set_ylim(-0.03, 1.03)
            ax.grid(alpha=0.3)
    fig.suptitle(f"Transplant: at most {MAX_CURVES} runs of each kind")
    return fig


def draw_transplant(results_dir, out_dir=None) -> list[Path]:
    root = Path(results_dir)
    arrays = read_npz(root / "transplant.npz", ("epochs",), writer="experiments/transplant.py")
    path = figures_dir(root, out_dir) / "transplant_curves.png"
    save_figure(transplant_curves(arrays, read_json(root / "transplant.json")), path)
    return [path]
