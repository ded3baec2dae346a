"""The linear teacher's curves (experiments/linear_teacher.py, linear_teacher.npz), from saved arrays alone: training
and test loss and accuracy against time for the first seed of every lambda, closed form (solid) against gradient
descent (dashed), and the eigenvalue formulas of the losses (dotted; test: the population loss)."""

from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from grokjax.figures.common import save_figure
from grokjax.run.results import read_json, read_npz

NEEDED = ("lambda", "seed", "time", *(f"{v}_{k}" for v in ("closed", "simulated")
                                      for k in ("train_loss", "test_loss", "train_acc", "test_acc")),
          "eigen_train_loss", "eigen_test_loss")


def curves(arrays: dict, info: dict) -> Figure:
    """Loss and accuracy against time (log axis; the first log, time 0, left out), one colour per lambda."""
    t = arrays["time"]
    shown = t > 0
    first = np.flatnonzero(arrays["seed"] == 0)
    colours = colormaps["viridis"](np.linspace(0, 0.9, len(first)))
    fig = Figure(figsize=(11, 8), layout="constrained")
    axes = fig.subplots(2, 2)
    for (row, col), key in zip(((0, 0), (0, 1), (1, 0), (1, 1)), ("train_loss", "test_loss", "train_acc", "test_acc")):
        ax = axes[row, col]
        for colour, i in zip(colours, first):
            label = f"lambda {arrays['lambda'][i]:.4g}"
            ax.plot(t[shown], arrays[f"closed_{key}"][i][shown], color=colour, linewidth=1.4, label=label)
            ax.plot(t[shown], arrays[f"simulated_{key}"][i][shown], color=colour, linewidth=1.2, linestyle="--")
            if key.endswith("loss"):
                ax.plot(t[shown], arrays[f"eigen_{key}"][i][shown], color=colour, linewidth=1, linestyle=":")
        ax.set_xscale("log")
        if key.endswith("loss"):
            ax.set_yscale("log")
            ax.set_ylim(bottom=max(ax.get_ylim()[0], 1e-12))  # below: float32 rounding of the evaluated losses
        else:
            ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel("time (lr x steps)")
        ax.set_ylabel(key.replace("_", " ").replace("acc", "accuracy"))
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    task = info.get("task", {})
    agree = info.get("agreement", {})
    note = (f"; largest |simulated - closed| accuracy: train {agree['max_abs_diff_train_acc']:.3g}, test "
            f"{agree['max_abs_diff_test_acc']:.3g}" if agree else "")
    fig.suptitle(f"Linear teacher (d_in {task.get('d_in')}, d_out {task.get('d_out')}, epsilon {task.get('epsilon')}, "
                 f"lr {task.get('lr')}), first seed\nclosed form solid, gradient descent dashed, eigenvalue formula "
                 f"dotted{note}", fontsize=9)
    return fig


def draw_linear_teacher(results_dir, out: Path) -> list[Path]:
    """The curves figure into `out` if `results_dir` holds linear_teacher.npz (else nothing)."""
    path = Path(results_dir) / "linear_teacher.npz"
    if not path.is_file():
        return []
    arrays = read_npz(path, NEEDED, "experiments/linear_teacher.py")
    info_path = path.with_suffix(".json")
    info = read_json(info_path) if info_path.is_file() else {}
    target = out / "linear_teacher_curves.png"
    save_figure(curves(arrays, info), target)
    return [target]
