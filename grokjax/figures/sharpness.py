"""Figures of how sharp grokking is (Miller, Gleeson et al., "Measuring sharpness in grokking"), from saved arrays
alone: relative and absolute sharpness against the relative grokking gap, in linear and log-log axes with the
least-squares line and its slope's 95% interval, and a panel of example fits over their traces.

They are drawn from a sharpness collection (`sharpness.npz`, or `sharpness_<view>.npz`, written by
experiments/concealed_parity.py and experiments/linear_teacher.py), or from a sweep's own fits (fits.npz, written by
experiments/fit_curves.py) with its traces, the held-out curve against training, coloured by grid point.
"""

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from grokjax.analysis import sharpness
from grokjax.figures.common import figures_dir, save_figure
from grokjax.run.results import load_sweep, read_json, read_npz

NEEDED = (*sharpness.TABLE_FIELDS, "axis_name", "axis", "example", "example_t", "example_train", "example_test")
LABELS = {"relative_sharpness": "relative sharpness $R_{rel} = s_{test} / s_{train}$",
          "absolute_sharpness": "absolute sharpness $R_{abs} = 2 a s_{test} / \\sqrt{\\pi}$"}
AXIS_LABELS = {"n_bits": "bits n", "lambda": "$\\lambda = d_{in} / N_{train}$", "grid_index": "grid point"}


def collection_paths(results_dir) -> list[Path]:
    """The sharpness collections saved in `results_dir` (sharpness.npz, sharpness_<view>.npz), by name."""
    return sorted(Path(results_dir).glob("sharpness*.npz"))


def is_sharpness_results(results_dir) -> bool:
    """A directory of sharpness collections that is not itself a sweep (a study of several sweeps, the linear teacher)."""
    return bool(collection_paths(results_dir)) and not (Path(results_dir) / "traces.npz").is_file()


def load_collection(path: Path) -> tuple[dict, dict]:
    """The arrays of a collection and its .json (empty if missing)."""
    arrays = read_npz(path, NEEDED, "experiments/concealed_parity.py or experiments/linear_teacher.py")
    info_path = path.with_suffix(".json")
    return arrays, read_json(info_path) if info_path.is_file() else {}


def sweep_collection(results_dir) -> tuple[dict, dict] | None:
    """A collection made from a sweep's fits.npz and traces (the held-out curve against training if fitted, else
    the first pair; coloured by grid point), or None if the sweep has no fits."""
    root = Path(results_dir)
    if not (root / "fits.npz").is_file():
        return None
    fits = read_npz(root / "fits.npz", ("curves", "pairs", "pair_test", "pair_train", "epochs", "t_star", "s", "r2",
                                        "reason", "chance", "relative_gap", "relative_sharpness",
                                        "absolute_sharpness"), "experiments/fit_curves.py")
    pairs = [str(p) for p in fits["pairs"]]
    if not pairs:
        return None
    pair = pairs.index("heldout") if "heldout" in pairs else 0
    sweep = load_sweep(root)
    traces = sweep["traces"]
    curves = {"train": traces["train_acc"], "heldout": traces.get("heldout_acc"),
              **{f"set {g}": traces["group_acc"][..., k] for k, g in enumerate(sweep["group_names"])}}
    test = curves[str(fits["curves"][fits["pair_test"][pair]])]
    table = sharpness.pair_table(fits, pair)
    grid = sweep["seeds"].get("grid_index", np.zeros(len(table["s_test"]), int))
    unit = read_json(root / "fits.json").get("unit", "epochs") if (root / "fits.json").is_file() else "epochs"
    arrays = sharpness.collection(table, "grid_index", grid, traces["epochs"], traces["train_acc"], test)
    return arrays, sharpness.collection_info(arrays, pairs[pair], f"{root.name}: fits of every run", unit)


def _scatter(ax, arrays: dict, measure: str, log: bool, info: dict) -> None:
    """One panel: `measure` against the relative gap, coloured by the axis, with the least-squares line."""
    x, y, c = arrays["relative_gap"], arrays[measure], arrays["axis"]
    keep = np.isfinite(x) & np.isfinite(y) & ((x > 0) & (y > 0) if log else True)
    points = ax.scatter(x[keep], y[keep], c=c[keep], cmap="viridis", s=18, edgecolors="none",
                        vmin=np.min(c), vmax=np.max(c))
    line = sharpness.line_fit(x, y, log=log)
    if line is not None:
        xs = np.geomspace(x[keep].min(), x[keep].max(), 50) if log else np.linspace(x[keep].min(), x[keep].max(), 50)
        ax.plot(xs, sharpness.line_values(line, xs), color="C3", linewidth=1.5,
                label=f"{'log-log ' if log else ''}slope {line.slope:.3g} [{line.slope_low:.3g}, {line.slope_high:.3g}]"
                      f"\nr = {line.r:.2f}, {line.n} runs")
        ax.legend(fontsize=7, loc="best")
    if log:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.tick_params(which="minor", labelsize=6)  # minor labels (2x10^1, 3x10^1, ...) would otherwise overlap
        ax.tick_params(axis="x", which="minor", labelrotation=45)
    ax.set_xlabel("relative grokking gap $m = t^*_{test} / t^*_{train} - 1$")
    ax.set_ylabel(LABELS[measure] + ("" if measure == "relative_sharpness" else f" (per {info.get('unit', 'epoch')})"),
                  fontsize=8)
    ax.grid(alpha=0.3, which="both" if log else "major")
    return points


def gap_sharpness(arrays: dict, info: dict) -> Figure:
    """Relative and absolute sharpness against the relative gap, linear (left) and log-log (right)."""
    fig = Figure(figsize=(11, 8.5), layout="constrained")
    axes = fig.subplots(2, 2)
    for row, measure in enumerate(("relative_sharpness", "absolute_sharpness")):
        for col, log in enumerate((False, True)):
            points = _scatter(axes[row, col], arrays, measure, log, info)
    axis = str(arrays["axis_name"])
    fig.colorbar(points, ax=axes, label=AXIS_LABELS.get(axis, axis), shrink=0.6)
    n, both = len(arrays["relative_gap"]), int(np.isfinite(arrays["relative_gap"]).sum())
    fig.suptitle(f"{info.get('what', 'Sharpness of grokking')}\n{both} of {n} runs with both curves fitted "
                 f"('{info.get('pair', 'test')}' against training); lines: least squares, 95% slope interval",
                 fontsize=10)
    return fig


def example_fits(arrays: dict, info: dict) -> Figure:
    """The traces of a few runs across the range of the relative gap with their fitted error functions."""
    examples = arrays["example"]
    n = max(len(examples), 1)
    cols = min(3, n)
    rows = -(-n // cols)
    fig = Figure(figsize=(4.2 * cols, 3.2 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    t = arrays["example_t"]
    axis = str(arrays["axis_name"])
    for k, ax in enumerate(axes):
        if k >= len(examples):
            ax.set_visible(False)
            continue
        i = examples[k]
        for side, colour, curve in (("train", "C0", arrays["example_train"][k]), ("test", "C1", arrays["example_test"][k])):
            chance = arrays[f"chance_{side}"][i]
            ax.plot(t, curve, ".", color=colour, markersize=2.5, alpha=0.6, label=f"{side} accuracy")
            ax.plot(t, sharpness.erf_curve(t, arrays[f"t_star_{side}"][i], arrays[f"s_{side}"][i], chance), "-",
                    color=colour, linewidth=1.2, label=f"fit: t* {arrays[f't_star_{side}'][i]:.4g}, "
                                                       f"s {arrays[f's_{side}'][i]:.3g}")
        ax.set_title(f"{AXIS_LABELS.get(axis, axis)} {arrays['axis'][i]:.6g}: m {arrays['relative_gap'][i]:.3g}, "
                     f"R_rel {arrays['relative_sharpness'][i]:.3g}", fontsize=8)
        positive = t[t > 0]
        if len(positive) and t.max() / positive.min() > 1e3:  # geometric logs (the linear teacher): a log axis
            ax.set_xscale("symlog", linthresh=float(positive.min()))
        ax.set_xlabel(info.get("unit", "epochs"), fontsize=8)
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="lower right")
    if not len(examples):
        axes[0].text(0.5, 0.5, "no run has both curves fitted", ha="center", va="center")
    fig.suptitle("Example fits A(t) = a erf(s (t - t*)) + b, runs at quantiles of the relative gap", fontsize=10)
    return fig


def reasons_note(info: dict) -> str:
    """'train: 60 fitted; test: 55 fitted, 5 never reaches the midpoint'."""
    return "; ".join(f"{side}: " + ", ".join(f"{v} {k}" for k, v in counts.items())
                     for side, counts in info.get("counts", {}).items())


def draw_collection(arrays: dict, info: dict, out: Path, suffix: str = "") -> list[Path]:
    """Both figures of one collection into `out`; returns the paths."""
    paths = []
    for name, make in (("gap_sharpness", gap_sharpness), ("example_fits", example_fits)):
        path = out / f"{name}{suffix}.png"
        save_figure(make(arrays, info), path)
        paths.append(path)
    return paths


def draw_sharpness(results_dir, out_dir=None) -> list[Path]:
    """Every collection of a sharpness study directory (and the linear teacher's curves if saved)."""
    out = figures_dir(results_dir, out_dir)
    paths = []
    for path in collection_paths(results_dir):
        arrays, info = load_collection(path)
        suffix = path.stem[len("sharpness"):]
        paths += draw_collection(arrays, info, out, suffix)
    from grokjax.figures.linear_teacher import draw_linear_teacher

    return paths + draw_linear_teacher(results_dir, out)


def draw_sweep_sharpness(results_dir, out_dir=None) -> list[Path]:
    """The sharpness figures of a sweep with fits.npz (none without)."""
    made = sweep_collection(results_dir)
    if made is None:
        return []
    return draw_collection(*made, figures_dir(results_dir, out_dir))


__all__ = ["draw_sharpness", "draw_sweep_sharpness", "is_sharpness_results", "reasons_note"]
