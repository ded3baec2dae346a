"""What every figure module shares: outcome names and colours, atomic PNG writes, the figures directory.

Figures are built on `matplotlib.figure.Figure` directly: no pyplot, no global state, never jax.
"""

from itertools import product
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from grokjax.analysis.outcomes import category_names
from grokjax.errors import UserError
from grokjax.run.outdir import atomic_write

DPI = 150
CI_NAMES = {"wilson": "Wilson score", "exact": "Clopper-Pearson"}


DIVERGED = "diverged"
"""The label of a run whose loss or parameters became non-finite: no outcome; figures leave it out and say so."""


def seed_outcomes(grokked: np.ndarray, group_names, diverged: np.ndarray | None = None) -> np.ndarray:
    """Each seed's outcome name ('both', 'S(4) only', ...) from its (seeds, groups) grokked booleans; DIVERGED for
    the seeds flagged in `diverged`."""
    grokked = np.asarray(grokked, dtype=bool)
    if grokked.ndim != 2 or grokked.shape[1] != len(group_names):
        raise ValueError(f"grokked has shape {grokked.shape}, expected (seeds, {len(group_names)}).")
    subsets = np.array(list(product((True, False), repeat=len(group_names))))
    match = np.all(grokked[:, None, :] == subsets[None, :, :], axis=2)
    labels = np.array(category_names(group_names), dtype=object)[np.argmax(match, axis=1)]
    if diverged is not None:
        labels[np.asarray(diverged, bool)] = DIVERGED
    return labels.astype(str)


def diverged_note(labels: np.ndarray) -> str:
    """'; 3 diverged runs not shown' (for titles and notes), or '' when no run diverged."""
    n = int(np.sum(labels == DIVERGED))
    return f"{n} diverged run{'s' if n != 1 else ''} (non-finite loss or parameters) not shown" if n else ""


def outcome_colours(names) -> dict:
    """One fixed colour per outcome, shared by all figures; the outcome with no group grokked is grey."""
    return {name: ("0.55" if i == len(names) - 1 else f"C{i}") for i, name in enumerate(names)}


def field_arrays(entries, names, missing: float = np.nan) -> list[np.ndarray]:
    """Each field `names` of the saved summary `entries` (dicts, None where a value is absent, as a proportion's
    fraction and interval with no runs) as a float array, `missing` for None."""
    return [np.array([e[n] if e[n] is not None else missing for e in entries], float) for n in names]


def versus(group_names) -> str:
    """'S(4) vs times(A(4),Z(2))': the groups competing in the sweep, for titles."""
    return " vs ".join(group_names)


def save_figure(fig: Figure, path: Path) -> None:
    """Write the PNG whole or not at all (`outdir.atomic_write`), so a reader never sees half a file."""
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=DPI))


def figures_dir(results_root: Path, out_dir=None) -> Path:
    """The directory figures go to (`out_dir`, default RESULTS_DIR/figures), created if needed."""
    out = Path(out_dir) if out_dir is not None else Path(results_root) / "figures"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"Cannot create the figures directory {out}: {e.strerror}.") from e
    return out


