"""Figures of a training-Jacobian results directory, drawn from its saved arrays alone (never jax).

A directory written by experiments/training_jacobian.py holds `config.json` with a
`training_jacobian` entry (`is_jacobian_results` checks it) and one `NAME.npz` per
training set, arrays with the seed axis first and the epoch axis second.
"""

from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from grokjax.errors import UserError
from grokjax.figures.common import figures_dir, save_figure
from grokjax.run.results import read_config_json, read_npz

CONFIG_KEY = "training_jacobian"
NEEDED = ("epochs", "singular_values", "cosines", "sigma_max")
FIGURE_NAMES = ("jacobian_spectra", "jacobian_vs_epochs")


def is_jacobian_results(results_dir) -> bool:
    """Whether `results_dir` holds training-Jacobian results: its config.json has a `training_jacobian` entry."""
    return read_config_json(results_dir, CONFIG_KEY) is not None


def load_jacobian(results_dir) -> dict:
    """The config and, per training set, its arrays (`settings`: name -> dict of arrays)."""
    root = Path(results_dir)
    config = read_config_json(root, CONFIG_KEY)
    if config is None:
        raise UserError(f"No training-Jacobian results in {root}: no readable config.json with a '{CONFIG_KEY}' entry.")
    try:  # everything the figures read from the config
        names = list(config[CONFIG_KEY]["settings"])
        [config[CONFIG_KEY][k] for k in ("sigma_tol", "cos_tol", "top_k")]
        [(config[CONFIG_KEY]["settings"][n]["task"], config["tasks"][n]["group_names"]) for n in names]
    except (KeyError, TypeError) as e:
        raise UserError(f"{root / 'config.json'} is not a complete training-Jacobian config "
                        f"({type(e).__name__}: {e}).") from e
    settings = {}
    for name in names:
        settings[name] = read_npz(root / f"{name}.npz", NEEDED, "experiments/training_jacobian.py")
    return {"dir": root, "config": config, "settings": settings}


def _title(results: dict, name: str) -> str:
    """'iid: 0.6 iid of S(4)': a training set's name, kind and groups."""
    setting = results["config"][CONFIG_KEY]["settings"][name]
    fraction = f" {setting['fraction']:g}" if setting["task"] in ("iid", "intersection_fraction") else ""
    described = f"{fraction} {setting['task']} of {' vs '.join(results['config']['tasks'][name]['group_names'])}"
    return described.strip() if name == setting["task"] else f"{name}:{described}"


def spectra(results: dict) -> Figure:
    """Per training set: singular values in decreasing order (top), and each direction's cosine between left and
    right singular vectors against its singular value (bottom), one colour per epoch T; every seed drawn."""
    cfg = results["config"][CONFIG_KEY]
    tol = cfg["sigma_tol"]
    names = list(results["settings"])
    fig = Figure(figsize=(0.8 + 5.2 * len(names), 8.0), layout="constrained")
    axes = fig.subplots(2, len(names), squeeze=False)
    for col, name in enumerate(names):
        arrays = results["settings"][name]
        epochs, sv, cos = arrays["epochs"], arrays["singular_values"], arrays["cosines"]
        colours = colormaps["viridis"](np.linspace(0, 0.9, len(epochs)))
        top, bottom = axes[0, col], axes[1, col]
        for e, (t, colour) in enumerate(zip(epochs, colours)):
            for s in range(sv.shape[0]):
                label = f"T = {t}" if s == 0 else None
                top.plot(np.arange(1, sv.shape[2] + 1), sv[s, e], color=colour, lw=1.2 if s == 0 else 0.6,
                         alpha=1.0 if s == 0 else 0.5, label=label)
                bottom.scatter(sv[s, e], cos[s, e], s=3, color=colour, alpha=0.4, edgecolors="none", label=label)
        top.set_yscale("log")
        bottom.set_xscale("log")
        for ax in (top, bottom):
            ax.grid(alpha=0.3, which="both")
        top.axhspan(1 - tol, 1 + tol, color="0.85", zorder=0, label=f"|σ - 1| < {tol:g}")
        bottom.axvspan(1 - tol, 1 + tol, color="0.85", zorder=0)
        bottom.axhline(cfg["cos_tol"], color="black", ls="--", lw=0.8, label=f"bulk cosine > {cfg['cos_tol']:g}")
        top.set_title(_title(results, name))
        top.set_xlabel("index i (decreasing σ)")
        top.set_ylabel("singular value σ_i of dθ_T/dθ_0")
        bottom.set_xlabel("singular value σ_i")
        bottom.set_ylabel("cosine u_i · v_i")
        bottom.set_ylim(-1.05, 1.05)
        top.legend(fontsize=8)
        bottom.legend(fontsize=8, markerscale=3)
    seeds = sv.shape[0]
    fig.suptitle(f"Training Jacobian spectra ({'1 seed' if seeds == 1 else f'{seeds} seeds; seed 0 thicker'})"
                 + (f", top {cfg['top_k']} only" if cfg["top_k"] else ""))
    return fig


def versus_epochs(results: dict) -> Figure:
    """Largest singular value, bulk size and log |det J| against T: median over seeds (line), each seed (dots)."""
    cfg = results["config"][CONFIG_KEY]
    panels = [("sigma_max", "largest singular value", True)]
    if not cfg["top_k"]:
        panels += [("bulk_size", f"bulk size (|σ-1| < {cfg['sigma_tol']:g}, cos > {cfg['cos_tol']:g})", False),
                   ("logdet", "log |det J| = Σ log σ_i", False)]
    fig = Figure(figsize=(0.8 + 4.4 * len(panels), 4.2), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (key, label, log) in zip(axes, panels):
        for i, (name, arrays) in enumerate(results["settings"].items()):
            epochs, values = arrays["epochs"], arrays[key]
            ax.plot(epochs, np.median(values, 0), color=f"C{i}", marker="o", label=f"{_title(results, name)} (median)")
            ax.scatter(np.broadcast_to(epochs, values.shape), values, color=f"C{i}", s=8, alpha=0.5)
        ax.set_xscale("log")
        ax.set_xticks(epochs, [str(t) for t in epochs])
        ax.xaxis.set_minor_locator(NullLocator())
        if log:
            ax.set_yscale("log")
        ax.set_xlabel("training epochs T")
        ax.set_title(label)
        ax.grid(alpha=0.3, which="both")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=len(results["settings"]))
    return fig


def draw_jacobian(results_dir, out_dir=None) -> list[Path]:
    """Draw the Jacobian figures of `results_dir` into `out_dir` (default RESULTS_DIR/figures); returns the paths."""
    results = load_jacobian(results_dir)
    out = figures_dir(results["dir"], out_dir)
    paths = []
    for name, draw in zip(FIGURE_NAMES, (spectra, versus_epochs)):
        path = out / f"{name}.png"
        save_figure(draw(results), path)
        paths.append(path)
    return paths
