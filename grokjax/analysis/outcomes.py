"""Which groups each seed grokked, and the ensemble's outcome fractions with confidence intervals."""

from itertools import product

import numpy as np
from scipy.stats import binomtest

CI_METHODS = ("wilson", "exact")


def grokked(final_group_acc: np.ndarray, threshold: float = 0.999) -> np.ndarray:
    """(seeds, groups) booleans: the seed's accuracy on that group's full table is >= threshold."""
    return final_group_acc >= threshold


def first_epoch_at_least(epochs: np.ndarray, values: np.ndarray, threshold: float) -> np.ndarray:
    """The first logged epoch at which `values` (seed axis first, log axis second) reach `threshold`, or -1."""
    reached = values >= threshold
    first = np.argmax(reached, axis=1)
    return np.where(reached.any(axis=1), epochs[first], -1)


def category_names(group_names) -> list[str]:
    """Names of the outcomes, one per subset of groups: 'G1 only', 'G2 only', 'both', 'neither' for two."""
    k = len(group_names)
    names = []
    for subset in product((True, False), repeat=k):
        chosen = [g for g, s in zip(group_names, subset) if s]
        if not chosen:
            names.append("neither" if k == 2 else "none")
        elif len(chosen) == k and k > 1:
            names.append("both" if k == 2 else "all")
        elif len(chosen) == 1:
            names.append(f"{chosen[0]} only")
        else:
            names.append(" + ".join(chosen))
    return names


def outcome_summary(grok: np.ndarray, group_names, level: float = 0.95, method: str = "wilson") -> dict:
    """Counts and fractions of every outcome, with `level` confidence intervals (Wilson or Clopper-Pearson)."""
    n = len(grok)
    rows = []
    for name, subset in zip(category_names(group_names), product((True, False), repeat=len(group_names))):
        count = int(np.all(grok == np.array(subset), axis=1).sum())
        ci = binomtest(count, n).proportion_ci(confidence_level=level, method=method)
        rows.append({"outcome": name, "count": count, "fraction": count / n, "ci_low": ci.low, "ci_high": ci.high})
    return {"n_seeds": n, "groups": list(group_names), "ci_level": level, "ci_method": method, "outcomes": rows}


def format_summary(summary: dict) -> str:
    """The outcome table as printed at the end of a sweep."""
    level = round(100 * summary["ci_level"])
    width = max(len("outcome"), *(len(r["outcome"]) for r in summary["outcomes"]))
    lines = [f"{'outcome':<{width}}  {'seeds':>7}  {'fraction':>8}  {level}% CI ({summary['ci_method']})"]
    for r in summary["outcomes"]:
        lines.append(f"{r['outcome']:<{width}}  {r['count']:>7}  {r['fraction']:>8.4f}  [{r['ci_low']:.4f}, {r['ci_high']:.4f}]")
    lines.append(f"{'total':<{width}}  {summary['n_seeds']:>7}")
    return "\n".join(lines)
