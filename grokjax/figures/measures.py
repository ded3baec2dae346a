"""Figures of the generalization measures saved beside a sweep by experiments/measures.py (`measures.npz`,
`measures_checkpoints.npz`), drawn from the saved arrays alone; the LLC joins them where its estimates are saved.

The *generalization gap* of a run at a logged epoch is its training accuracy minus its accuracy on the full
table of its group: the group whose final full-table accuracy is highest (the group it grokked, if one). Where
the training labels agree with the group (the intersection tasks) the full-table accuracy is
f train + (1 - f) held-out, f = n_train / n_points, so this gap is (1 - f) times the held-out gap: the same curve,
scaled. A measure *tracks* the gap over training by the Kendall tau, per run, between its values at the
checkpoints and the gap there (median over runs); its final value is correlated with the outcome by Kendall's
tau-b (scipy) against reaching each group (0/1) and against the final gap. A measure that predicts
generalization correlates positively with the gap and negatively with reaching a group.
"""

import warnings
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from scipy.stats import kendalltau

from grokjax.analysis.outcomes import category_names
from grokjax.figures.common import diverged_note, outcome_colours, seed_outcomes, versus
from grokjax.run.results import load_sweep, read_npz

MEASURE_NEEDED = {"measures": ("run", "L2"), "measures_checkpoints": ("run", "epochs", "L2")}
DIAGNOSTICS = ("run", "epochs", "margin", "sigma", "magnitude_sigma", "train_acc")
"""Saved arrays that are not measures."""


def load_measures(results_dir, name: str) -> dict | None:
    """The arrays of `RESULTS_DIR/name.npz` ('measures' or 'measures_checkpoints'), or None if it is absent."""
    path = Path(results_dir) / f"{name}.npz"
    return read_npz(path, MEASURE_NEEDED[name], "experiments/measures.py") if path.is_file() else None


def measure_names(saved: dict) -> list[str]:
    """The measures of saved arrays, in their saved order."""
    return [k for k in saved if k not in DIAGNOSTICS]


def generalization_gap(sweep: dict, runs) -> np.ndarray:
    """(runs, logged epochs): training accuracy minus the full-table accuracy of each run's group (see above)."""
    acc = sweep["traces"]["group_acc"][runs]  # (runs, logs, groups)
    best = np.argmax(acc[:, -1], axis=-1)
    return sweep["traces"]["train_acc"][runs] - np.take_along_axis(acc, best[:, None, None], -1)[..., 0]


def gap_at(sweep: dict, runs, epochs) -> np.ndarray:
    """The generalization gap (runs, len(epochs)) at the given logged epochs."""
    at = np.searchsorted(sweep["traces"]["epochs"], epochs)
    return generalization_gap(sweep, runs)[:, at]


def kendall_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall's tau-b between x[r] and y[r] for every row r (vectorised over rows); NaN for a row with a non-finite
    value or without pairs untied in both."""
    i, j = np.triu_indices(x.shape[1], 1)
    dx, dy = np.sign(x[:, j] - x[:, i]), np.sign(y[:, j] - y[:, i])
    with np.errstate(invalid="ignore", divide="ignore"):
        tau = np.sum(dx * dy, 1) / np.sqrt(np.sum(dx**2, 1) * np.sum(dy**2, 1))
    ok = np.all(np.isfinite(x), 1) & np.all(np.isfinite(y), 1)
    return np.where(ok, tau, np.nan)


def _curves(sweep: dict, saved: dict, llc: dict | None) -> list[tuple]:
    """(name, run indices, epochs, values (runs, checkpoints)) of every measure over training, the LLC last."""
    curves = [(m, saved["run"], saved["epochs"], saved[m]) for m in measure_names(saved)]
    if llc is not None:
        curves.append(("LLC", llc["run"], llc["epochs"], llc["llc"]))
    return curves


def tracking(sweep: dict, saved: dict, llc: dict | None = None) -> dict:
    """Per measure: the median over runs (not diverged) of the Kendall tau between the measure and the gap over
    the checkpoints, and the number of runs it has."""
    out = {}
    for name, runs, epochs, values in _curves(sweep, saved, llc):
        tau = kendall_rows(np.where(np.isfinite(values), values, np.nan), gap_at(sweep, runs, epochs))
        tau = tau[~sweep["diverged"][runs] & np.isfinite(tau)]
        out[name] = (float(np.median(tau)) if len(tau) else float("nan"), len(tau))
    return out


def measures_over_training(sweep: dict, saved: dict, llc: dict | None = None) -> Figure:
    """One panel per measure (and the LLC): its median over the runs of each outcome at every checkpoint (solid,
    left axis) beside the median generalization gap (dashed, right axis), titled with how well it tracks the gap."""
    curves, tracked = _curves(sweep, saved, llc), tracking(sweep, saved, llc)
    names = category_names(sweep["group_names"])
    colours = outcome_colours(names)
    cols = 5
    rows = -(-len(curves) // cols)
    fig = Figure(figsize=(3.4 * cols, 2.6 * rows + 1), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    labels_shown = None
    for ax, (name, runs, epochs, values) in zip(axes, curves):
        labels = seed_outcomes(sweep["seeds"]["grokked"][runs], sweep["group_names"], sweep["diverged"][runs])
        values = np.where(np.isfinite(values), values, np.nan)
        gap, twin = gap_at(sweep, runs, epochs), ax.twinx()
        for outcome in names:
            sel = labels == outcome
            if sel.any():
                with warnings.catch_warnings():  # a checkpoint where no run of the outcome has a finite value
                    warnings.simplefilter("ignore", RuntimeWarning)
                    median = np.nanmedian(values[sel], 0)
                ax.plot(epochs, median, color=colours[outcome], label=f"{outcome} ({int(sel.sum())})")
                twin.plot(epochs, np.median(gap[sel], 0), color=colours[outcome], linestyle="--", linewidth=0.8)
        tau, n = tracked[name]
        ax.set_title(f"{name}\ntracks the gap: tau {tau:.2f} ({n} runs)", fontsize=8)
        ax.tick_params(labelsize=7)
        twin.tick_params(labelsize=7, colors="0.4")
        ax.grid(alpha=0.3)
        labels_shown = labels
    for ax in axes[len(curves):]:
        ax.set_visible(False)
    note = diverged_note(labels_shown)
    fig.suptitle(f"{versus(sweep['group_names'])}: generalization measures against epoch (solid, median per outcome) "
                 f"and the generalization gap (dashed, right axes){f'; {note}' if note else ''}")
    fig.legend(*axes[0].get_legend_handles_labels(), title="outcome (runs)", loc="outside lower center",
               ncols=len(names))
    return fig


def final_measures(results_dir) -> dict | None:
    """Final value of every measure by run: `measures.npz`, else the last checkpoint of `measures_checkpoints.npz`;
    with the LLC (llc.npz) where its runs match. None if neither file is saved."""
    saved = load_measures(results_dir, "measures")
    if saved is None:
        ckpt = load_measures(results_dir, "measures_checkpoints")
        if ckpt is None:
            return None
        saved = {k: (v[:, -1] if k in measure_names(ckpt) else v) for k, v in ckpt.items() if k != "epochs"}
    llc = Path(results_dir) / "llc.npz"
    if llc.is_file():
        estimates = read_npz(llc, ("run", "llc"), "experiments/llc.py")
        if np.array_equal(estimates["run"], saved["run"]):
            saved = {**saved, "LLC": estimates["llc"]}
    return saved


def outcome_correlations(sweep: dict, final: dict) -> dict:
    """Per measure: Kendall's tau-b (and its p-value) of the final values against reaching each group (0/1) and
    against the final gap, over the runs that did not diverge and whose value is finite."""
    runs = final["run"]
    reached = sweep["seeds"]["grokked"][runs]
    targets = {g: reached[:, i].astype(float) for i, g in enumerate(sweep["group_names"])}
    targets["final gap"] = generalization_gap(sweep, runs)[:, -1]
    out = {}
    for name in measure_names(final):
        ok = ~sweep["diverged"][runs] & np.isfinite(final[name])
        out[name] = {}
        for target, y in targets.items():
            if ok.sum() < 3 or np.ptp(y[ok]) == 0 or np.ptp(final[name][ok]) == 0:
                out[name][target] = (float("nan"), float("nan"), int(ok.sum()))
            else:
                result = kendalltau(final[name][ok], y[ok])
                out[name][target] = (float(result.statistic), float(result.pvalue), int(ok.sum()))
    return out


def measures_correlation(sweep: dict, corr: dict) -> Figure:
    """Heat map of Kendall's tau of each final measure (rows) against reaching each group and the final gap."""
    names, targets = list(corr), list(next(iter(corr.values())))
    tau = np.array([[corr[m][t][0] for t in targets] for m in names])
    fig = Figure(figsize=(2.2 + 1.6 * len(targets), 0.32 * len(names) + 1.6), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(tau, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
    for (r, c), value in np.ndenumerate(tau):
        ax.text(c, r, "n/a" if np.isnan(value) else f"{value:.2f}", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(targets)), [f"reached {t}" if t != "final gap" else t for t in targets], fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    fig.colorbar(image, ax=ax, label="Kendall tau-b")
    n = next(iter(next(iter(corr.values())).values()))[2]
    fig.suptitle(f"{versus(sweep['group_names'])}: final measures against the outcome ({n} runs)", fontsize=10)
    return fig


def measures_correlation_lines(results_dir) -> list[str]:
    """Printed lines: each final measure's Kendall tau with reaching each group and with the final gap, and the
    measures ranked by how well they track the gap over training (if checkpoints were measured)."""
    final = final_measures(results_dir)
    if final is None:
        return []
    sweep = load_sweep(results_dir)
    lines = []
    for name, row in outcome_correlations(sweep, final).items():
        cells = ", ".join(f"{t}: {tau:.3f}" for t, (tau, _, _) in row.items())
        lines.append(f"{name} Kendall tau with reaching / final gap: {cells}")
    ckpt = load_measures(results_dir, "measures_checkpoints")
    if ckpt is not None:
        llc = _llc_checkpoints(results_dir)
        ranked = sorted(tracking(sweep, ckpt, llc).items(), key=lambda kv: -np.nan_to_num(kv[1][0], nan=-2))
        lines.append("tracking the gap over training (median Kendall tau over runs): " +
                     ", ".join(f"{name} {tau:.2f}" for name, (tau, _) in ranked))
    return lines


def _llc_checkpoints(results_dir) -> dict | None:
    path = Path(results_dir) / "llc_checkpoints.npz"
    return read_npz(path, ("run", "epochs", "llc"), "experiments/llc.py") if path.is_file() else None


def draw_measures(sweep: dict, save) -> None:
    """Every measures figure of the arrays saved beside `sweep`, each passed to `save(name, figure)`."""
    if (ckpt := load_measures(sweep["dir"], "measures_checkpoints")) is not None:
        save("measures_over_training", measures_over_training(sweep, ckpt, _llc_checkpoints(sweep["dir"])))
    if (final := final_measures(sweep["dir"])) is not None:
        save("measures_correlation", measures_correlation(sweep, outcome_correlations(sweep, final)))
