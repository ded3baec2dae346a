"""Outcome categories, first-crossing epochs and confidence intervals against closed forms."""

import itertools
import math

import numpy as np
import pytest
from scipy.stats import beta

from grokjax.analysis.outcomes import (category_names, first_epoch_at_least, format_grid_summary, format_summary,
                                       grokked, outcome_summary, summary_from_counts)

Z95 = 1.959963984540054  # the 0.975 quantile of the standard normal
NAMES = ["S(4)", "times(A(4),Z(2))"]


def wilson(k, n, z=Z95):
    """Wilson score interval without continuity correction."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def clopper_pearson(k, n, level=0.95):
    alpha = 1 - level
    low = 0.0 if k == 0 else beta.ppf(alpha / 2, k, n - k + 1)
    high = 1.0 if k == n else beta.ppf(1 - alpha / 2, k + 1, n - k)
    return low, high


def grok_matrix(counts):
    """(seeds, 2) booleans with counts[i] seeds in the i-th category of product((True, False), repeat=2)."""
    rows = [subset for subset, c in zip(itertools.product((True, False), repeat=2), counts) for _ in range(c)]
    return np.array(rows, bool).reshape(-1, 2)


def test_category_names_two_groups():
    names = category_names(["G1", "G2"])
    assert names == ["both", "G1 only", "G2 only", "neither"]
    # the order follows product((True, False), repeat=2)
    subsets = list(itertools.product((True, False), repeat=2))
    assert subsets == [(True, True), (True, False), (False, True), (False, False)]
    assert [category_names(["G1", "G2"])[subsets.index(s)] for s in [(False, True), (True, False)]] == ["G2 only", "G1 only"]


def test_category_names_three_groups():
    names = category_names(["A", "B", "C"])
    assert len(names) == 8 and len(set(names)) == 8
    assert names[0] == "all" and names[-1] == "none"
    assert names[1] == "A + B" and names[3] == "A only" and names[6] == "C only"


@pytest.mark.parametrize("counts", [(0, 3, 7, 0), (5, 0, 0, 0), (1, 2, 3, 4), (0, 0, 0, 9)])
def test_wilson_interval(counts):
    rng = np.random.default_rng(sum(counts))
    grok = grok_matrix(counts)[rng.permutation(sum(counts))]
    n = len(grok)
    summary = outcome_summary(grok, NAMES)
    assert summary["n_seeds"] == n and summary["ci_method"] == "wilson" and summary["ci_level"] == 0.95
    assert [r["outcome"] for r in summary["outcomes"]] == ["both", "S(4) only", "times(A(4),Z(2)) only", "neither"]
    assert [r["count"] for r in summary["outcomes"]] == list(counts)
    assert sum(r["count"] for r in summary["outcomes"]) == n
    for row, k in zip(summary["outcomes"], counts):
        assert row["fraction"] == pytest.approx(k / n)
        low, high = wilson(k, n)
        assert row["ci_low"] == pytest.approx(low, abs=1e-12)
        assert row["ci_high"] == pytest.approx(high, abs=1e-12)
        assert row["ci_low"] <= k / n <= row["ci_high"]


def test_wilson_known_value():
    # k = 0, n = 2: centre = (z^2/4) / (1 + z^2/2) = half, so the interval is [0, z^2 / (2 + z^2)] = [0, 0.6576]
    summary = outcome_summary(grok_matrix((0, 0, 0, 2)), NAMES)
    assert summary["outcomes"][0]["ci_low"] == pytest.approx(0, abs=1e-12)
    assert summary["outcomes"][0]["ci_high"] == pytest.approx(Z95**2 / (2 + Z95**2), rel=1e-12)
    assert summary["outcomes"][0]["ci_high"] == pytest.approx(0.6576, abs=5e-5)


@pytest.mark.parametrize("level", [0.95, 0.9])
@pytest.mark.parametrize("counts", [(0, 3, 7, 0), (4, 0, 0, 0), (2, 5, 1, 12)])
def test_exact_interval(counts, level):
    grok = grok_matrix(counts)
    summary = outcome_summary(grok, NAMES, level=level, method="exact")
    assert summary["ci_method"] == "exact" and summary["ci_level"] == level
    for row, k in zip(summary["outcomes"], counts):
        low, high = clopper_pearson(k, len(grok), level)
        assert row["ci_low"] == pytest.approx(low, abs=1e-9)
        assert row["ci_high"] == pytest.approx(high, abs=1e-9)


def test_each_seed_in_exactly_one_category():
    rng = np.random.default_rng(0)
    final_acc = rng.choice([0.5, 0.999, 1.0, 0.9989], size=(50, 2))
    grok = grokked(final_acc)
    assert (grok == (final_acc >= 0.999)).all()
    summary = outcome_summary(grok, NAMES)
    by_name = {r["outcome"]: r["count"] for r in summary["outcomes"]}
    assert by_name["both"] == int((grok[:, 0] & grok[:, 1]).sum())
    assert by_name["S(4) only"] == int((grok[:, 0] & ~grok[:, 1]).sum())
    assert by_name["times(A(4),Z(2)) only"] == int((~grok[:, 0] & grok[:, 1]).sum())
    assert by_name["neither"] == int((~grok[:, 0] & ~grok[:, 1]).sum())
    assert sum(by_name.values()) == 50


def test_three_groups_counts():
    rng = np.random.default_rng(1)
    grok = rng.random((40, 3)) < 0.5
    summary = outcome_summary(grok, ["A", "B", "C"])
    counts = [r["count"] for r in summary["outcomes"]]
    assert len(counts) == 8 and sum(counts) == 40
    # a seed's category index is the binary number of its *failures* (True sorts first)
    index = (~grok[:, 0]) * 4 + (~grok[:, 1]) * 2 + (~grok[:, 2]) * 1
    assert counts == list(np.bincount(index, minlength=8))


def test_first_epoch_at_least():
    epochs = np.array([0, 5, 10, 15, 20])
    values = np.array([
        [0.1, 0.5, 0.99, 1.0, 1.0],  # reaches 0.99 at epoch 10
        [0.1, 0.2, 0.3, 0.4, 0.5],  # never
        [1.0, 1.0, 1.0, 1.0, 1.0],  # already at epoch 0
        [0.1, 0.995, 0.2, 0.1, 0.995],  # the first crossing counts, even if it falls back
        [0.1, 0.2, 0.3, 0.4, 0.99],  # only at the last log
    ])
    assert first_epoch_at_least(epochs, values, 0.99).tolist() == [10, -1, 0, 5, 20]
    assert first_epoch_at_least(epochs, values, 1.0).tolist() == [15, -1, 0, -1, -1]


def test_format_summary():
    summary = outcome_summary(grok_matrix((1, 2, 3, 4)), NAMES, level=0.9, method="exact")
    text = format_summary(summary)
    lines = text.splitlines()
    assert len(lines) == 6
    assert "90% CI (exact)" in lines[0]
    for line, row in zip(lines[1:5], summary["outcomes"]):
        assert line.startswith(row["outcome"])
        assert line.split()[-4:-2] == [str(row["count"]), f"{row['fraction']:.4f}"]
        assert f"[{row['ci_low']:.4f}, {row['ci_high']:.4f}]" in line
    assert lines[-1].split() == ["total", "10"]


def test_many_grid_points_print_as_one_table_with_a_row_per_point():
    groups = ["A", "B"]
    a = summary_from_counts(np.array([3, 1, 0, 4]), 0, groups)
    b = summary_from_counts(np.array([0, 0, 2, 6]), 2, groups)
    lines = format_grid_summary([a, b], ["lr 0.1", "lr 1"]).splitlines()
    assert lines[0] == "seeds, fraction and 95% CI (wilson) of each outcome (of the seeds that did not diverge)"
    assert lines[1].split() == ["grid", "point", "both", "A", "only", "B", "only", "neither", "diverged"]
    assert lines[2].startswith("lr 0.1 ") and lines[2].endswith(" 0")
    assert f"3 0.375 [{a['outcomes'][0]['ci_low']:.3f}, {a['outcomes'][0]['ci_high']:.3f}]" in lines[2]
    assert lines[3].startswith("lr 1 ") and "6 0.750 [" in lines[3] and lines[3].endswith(" 2")
