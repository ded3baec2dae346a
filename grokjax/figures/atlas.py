"""Figures of a group-pair atlas (`atlas.json` and `.npz`, `grokjax.run.atlas`), from saved numbers alone: per
measure, G1's share of the decided seeds against the measure's difference G1 - G2 (one point per pair, with its
interval); per pair its outcome fractions (G1, G2, neither) against the intersection's label balance; and G1's
share against how often its solution has the smaller final weight norm."""

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from grokjax.figures.common import figures_dir, save_figure
from grokjax.run.results import read_json, read_npz


def is_atlas_results(results_dir) -> bool:
    return (Path(results_dir) / "atlas.json").is_file()


def share_against_measures(info: dict, arrays: dict) -> Figure:
    """One panel per measure that differs in some pair: G1's share against Δ, with the concordance in the title."""
    names = [k for k in info["measures"] if np.any(arrays[f"delta_{k}"] != 0)]
    cols = min(4, max(1, len(names)))
    rows = -(-len(names) // cols) or 1
    fig = Figure(figsize=(3.6 * cols, 3.0 * rows), layout="constrained")
    axes = np.asarray(fig.subplots(rows, cols, squeeze=False)).ravel()
    share, low, high = arrays["share"], arrays["ci_low"], arrays["ci_high"]
    for ax, name in zip(axes, names):
        delta = arrays[f"delta_{name}"]
        ax.errorbar(delta, share, yerr=[np.nan_to_num(share - low), np.nan_to_num(high - share)], fmt="o",
                    markersize=4, capsize=2, alpha=0.8)
        ax.axhline(0.5, color="0.5", linewidth=0.8)
        ax.axvline(0, color="0.5", linewidth=0.8)
        c = info["readings"][name]["concordance"]
        conc = "" if c is None else f"\nsmaller wins {c['count']}/{info['readings'][name]['n_counted']}"
        ax.set_title(f"{name}{conc}", fontsize=9)
        ax.set_xlabel(f"{name}(G1) - {name}(G2)", fontsize=8)
        ax.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    axes[0].set_ylabel("G1 share of decided seeds")
    fig.suptitle(f"{len(share)} pairs K ⋊ Z2 (G1) vs K × Z2 (G2): preference against each measure "
                 f"(95% Wilson intervals)")
    return fig


def outcomes_against_balance(arrays: dict) -> Figure:
    """Per pair, the fractions of seeds that grokked G1, G2 and neither against the intersection's label balance."""
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    axes = fig.subplots(1, 2)
    n = arrays["count_g1"] + arrays["count_g2"] + arrays["count_none"] + arrays["count_both"]
    n = np.where(n > 0, n, np.nan)
    for ax, key, label in ((axes[0], "normalized_entropy", "label entropy / log N on the intersection"),
                           (axes[1], "intersection_share", "intersection share of the table")):
        for k, (what, name) in enumerate((("count_g1", "G1"), ("count_g2", "G2"), ("count_none", "neither"))):
            ax.scatter(arrays[key], arrays[what] / n, s=18, color=f"C{k}", label=name, alpha=0.8)
        ax.set_xlabel(label)
        ax.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("fraction of seeds")
    axes[0].legend(fontsize=8)
    fig.suptitle("Outcomes per pair against the intersection's balance and size")
    return fig


def share_against_norm_order(info: dict, arrays: dict) -> Figure:
    """G1's share against the probability that a G1-only seed has a smaller final weight norm than a G2-only seed,
    one point per pair where both solutions were seen, with both intervals; the pairs the concordance counts
    (clear winner and clear norm order) filled, the others open."""
    fig = Figure(figsize=(6.6, 4.8), layout="constrained")
    ax = fig.add_subplot()
    r = info.get("efficiency") or {}
    counted = np.zeros(len(arrays["share"]), bool)
    counted[r.get("counted", [])] = True
    for kind, shown in (("counted", counted), ("not counted", ~counted & np.isfinite(arrays["g1_smaller"]))):
        x, share = arrays["g1_smaller"][shown], arrays["share"][shown]
        ax.errorbar(x, share, xerr=[x - arrays["g1_smaller_low"][shown], arrays["g1_smaller_high"][shown] - x],
                    yerr=[share - arrays["ci_low"][shown], arrays["ci_high"][shown] - share], fmt="o", markersize=5,
                    capsize=2, alpha=0.8, color="C0", markerfacecolor="C0" if kind == "counted" else "white",
                    label=f"{kind} ({int(shown.sum())})")
        for name, xi, yi in zip(arrays["name"][shown], x, share):
            ax.annotate(str(name), (xi, yi), xytext=(4, 3), textcoords="offset points", fontsize=7)
    ax.axhline(0.5, color="0.5", linewidth=0.8)
    ax.axvline(0.5, color="0.5", linewidth=0.8)
    c = r.get("concordance")
    words = "no pair with a clear winner and a clear norm order" if not c else \
        f"the winner tends to the smaller norm in {c['count']}/{r['n_counted']} [{c['ci_low']:.2f}, {c['ci_high']:.2f}]"
    ax.set_title(f"Preference against the solutions' final weight norms\n{words}", fontsize=10)
    ax.set_xlabel("P(a G1-only seed's norm < a G2-only seed's), 95% bootstrap interval")
    ax.set_ylabel("G1 share of decided seeds (95% Wilson)")
    ax.set_xlim(-0.05, 1.05)
    ax.set_ylim(-0.05, 1.05)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    return fig


def draw_atlas(results_dir, out_dir=None) -> list:
    """Draw the atlas figures into `out_dir` (default RESULTS_DIR/figures); the paths written."""
    root = Path(results_dir)
    info = read_json(root / "atlas.json")
    arrays = read_npz(root / "atlas.npz", ("share", "ci_low", "ci_high", "count_g1"), "experiments/atlas.py")
    out = figures_dir(results_dir, out_dir)
    paths = [out / "atlas_measures.png", out / "atlas_balance.png"]
    save_figure(share_against_measures(info, arrays), paths[0])
    save_figure(outcomes_against_balance(arrays), paths[1])
    if "g1_smaller" in arrays:  # atlases written before the norms were read have none
        paths.append(out / "atlas_efficiency.png")
        save_figure(share_against_norm_order(info, arrays), paths[-1])
    return paths
