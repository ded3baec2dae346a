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


def outcome_counts(grok: np.ndarray) -> np.ndarray:
    """How many seeds fall in each outcome (in `category_names` order) from their (seeds, groups) booleans."""
    grok = np.asarray(grok, bool)
    subsets = np.array(list(product((True, False), repeat=grok.shape[1])))
    return np.array([int(np.all(grok == s, axis=1).sum()) for s in subsets], np.int64)


def proportion(count: int, n: int, level: float = 0.95, method: str = "wilson") -> dict:
    """count / n with its `level` confidence interval (Wilson or Clopper-Pearson); None fields when n is 0."""
    if n == 0:  # every seed diverged: no fraction to estimate
        return {"count": int(count), "fraction": None, "ci_low": None, "ci_high": None}
    ci = binomtest(int(count), int(n)).proportion_ci(confidence_level=level, method=method)
    return {"count": int(count), "fraction": count / n, "ci_low": ci.low, "ci_high": ci.high}


def summary_from_counts(counts, n_diverged: int, group_names, level: float = 0.95, method: str = "wilson") -> dict:
    """The outcome summary of seeds counted per outcome (`outcome_counts` of the seeds that did not diverge) and
    `n_diverged` seeds whose loss or parameters became non-finite.

    Fractions and intervals of the outcomes are of the `n_finite` seeds that did not diverge; the diverged
    seeds are counted apart, their fraction (and interval) of all `n_seeds`."""
    n_finite = int(np.sum(counts))
    n = n_finite + int(n_diverged)
    rows = [{"outcome": name, **proportion(c, n_finite, level, method)}
            for name, c in zip(category_names(group_names), counts)]
    return {"n_seeds": n, "n_finite": n_finite, "n_diverged": int(n_diverged), "groups": list(group_names),
            "ci_level": level, "ci_method": method, "outcomes": rows,
            "diverged": proportion(n_diverged, n, level, method)}


def outcome_summary(grok: np.ndarray, group_names, level: float = 0.95, method: str = "wilson",
                    diverged: np.ndarray | None = None) -> dict:
    """Counts and fractions of every outcome, with `level` confidence intervals (Wilson or Clopper-Pearson);
    seeds flagged in `diverged` are counted apart (see `summary_from_counts`)."""
    grok = np.asarray(grok, bool)
    diverged = np.zeros(len(grok), bool) if diverged is None else np.asarray(diverged, bool)
    return summary_from_counts(outcome_counts(grok[~diverged].reshape(-1, len(group_names))), int(diverged.sum()),
                               group_names, level, method)


def _cells(r: dict) -> str:
    if r["fraction"] is None:
        return f"{r['count']:>7}  {'-':>8}  -"
    return f"{r['count']:>7}  {r['fraction']:>8.4f}  [{r['ci_low']:.4f}, {r['ci_high']:.4f}]"


def format_grid_summary(points: list[dict], labels: list[str]) -> str:
    """The outcome summaries of many grid points as one table, a row per point (named by `labels`): each outcome's
    seeds and fraction with its interval, and the diverged seeds if any."""
    names = [r["outcome"] for r in points[0]["outcomes"]]
    diverged = any(p.get("n_diverged", 0) for p in points)
    cell = lambda r: f"{r['count']} -" if r["fraction"] is None else \
        f"{r['count']} {r['fraction']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
    rows = [[cell(r) for r in p["outcomes"]] + ([str(p.get("n_diverged", 0))] if diverged else []) for p in points]
    head = ["grid point"] + names + (["diverged"] if diverged else [])
    table = [head] + [[label] + row for label, row in zip(labels, rows)]
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    level = round(100 * points[0]["ci_level"])
    lines = [f"seeds, fraction and {level}% CI ({points[0]['ci_method']}) of each outcome"
             + (" (of the seeds that did not diverge)" if diverged else "")]
    lines += ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
              for r in table]
    return "\n".join(lines)


def format_summary(summary: dict) -> str:
    """The outcome table as printed at the end of a sweep; with diverged seeds, a 'diverged' line (its fraction
    of all seeds) and a note that the fractions above it are of the seeds that did not diverge."""
    level = round(100 * summary["ci_level"])
    diverged = summary.get("n_diverged", 0)
    width = max(len("outcome"), len("diverged"), *(len(r["outcome"]) for r in summary["outcomes"]))
    lines = [f"{'outcome':<{width}}  {'seeds':>7}  {'fraction':>8}  {level}% CI ({summary['ci_method']})"]
    for r in summary["outcomes"]:
        lines.append(f"{r['outcome']:<{width}}  {_cells(r)}")
    if diverged:
        lines.append(f"{'diverged':<{width}}  {_cells(summary['diverged'])}")
    lines.append(f"{'total':<{width}}  {summary['n_seeds']:>7}")
    if diverged:
        lines.append(f"(the outcome fractions are of the {summary['n_finite']} seeds that did not diverge; "
                     f"'diverged' is of all {summary['n_seeds']}: non-finite loss or parameters)")
    return "\n".join(lines)
