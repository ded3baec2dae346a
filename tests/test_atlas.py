"""The atlas's reading (concordance, logistic slope against an independent optimizer) and its command end to end."""

import json

import numpy as np
import scipy.optimize

from cli_runner import run_main
from grokjax.analysis.atlas import (MIN_SEEDS, _logistic, efficiency_reading, measure_reading, norm_by_solution,
                                    preference, smaller_probability)
from grokjax.run import storage
from grokjax.run.atlas import pair_counts

from experiments import atlas as experiment


def test_logistic_fit_matches_a_general_optimizer():
    rng = np.random.default_rng(3)
    x, n = rng.normal(size=10), rng.integers(20, 300, 10).astype(float)
    k = rng.binomial(n.astype(int), 1 / (1 + np.exp(-(-0.4 + 0.9 * x)))).astype(float)
    nll = lambda t: -np.sum(k * (t[0] + t[1] * x) - n * np.logaddexp(0, t[0] + t[1] * x))
    want = scipy.optimize.minimize(nll, [0.0, 0.0], method="BFGS", options={"gtol": 1e-10}).x
    np.testing.assert_allclose(_logistic(x[None], k[None], n[None])[0], want, rtol=1e-5, atol=1e-6)


def test_a_measure_that_orders_every_pair_is_concordant_and_separates():
    delta = np.array([-3.0, -2, -1, 1, 2, 4])
    g1 = np.array([95, 90, 80, 10, 5, 0])  # the group with the smaller measure wins every pair
    r = measure_reading(delta, g1, 100 - g1, n_boot=200)
    assert r["concordance"]["count"] == 6 and r["n_counted"] == 6 and r["concordance"]["ci_low"] > 0.5
    assert r["fit"] == "finite" and r["slope"] < 0 and r["slope_ci"][1] < 0
    for d in (delta, np.array([-3, -0.02, -0.01, 0.01, 0.02, 3])):  # a wide or a narrow gap: both separate
        pure = measure_reading(d, np.array([100, 100, 100, 0, 0, 0]), np.array([0, 0, 0, 100, 100, 100]),
                               n_boot=200)
        assert pure["fit"] == "separates: the smaller value wins" and np.isnan(pure["slope"])  # never a number
    one_sided = measure_reading(delta, np.array([90, 80, 70, 60, 50, 40]), np.zeros(6, int), n_boot=200)
    assert one_sided["fit"].startswith("one-sided") and np.isnan(one_sided["slope"])
    unrelated = measure_reading(np.array([1.0, -1, 1, -1]), np.array([90, 90, 10, 10]), np.array([10, 10, 90, 90]),
                                n_boot=200)
    assert unrelated["concordance"]["count"] == 2 and unrelated["slope_ci"][0] < 0 < unrelated["slope_ci"][1]
    assert np.isnan(measure_reading(np.zeros(4), g1[:4], 100 - g1[:4])["slope"])  # a constant measure
    p = preference(np.array([3, 0]), np.array([1, 0]))
    assert p["share"][0] == 0.75 and np.isnan(p["share"][1])


def test_the_probability_of_a_smaller_norm_is_the_share_of_ordered_couples():
    rng = np.random.default_rng(1)
    g1, g2 = rng.integers(0, 6, (3, 7)).astype(float), rng.integers(0, 6, (3, 5)).astype(float)  # many ties
    brute = np.mean((g1[:, :, None] < g2[:, None, :]) + 0.5 * (g1[:, :, None] == g2[:, None, :]), (1, 2))
    np.testing.assert_allclose(smaller_probability(g1, g2), brute)


def test_the_preferred_solution_against_its_norm():
    """Pairs 0 and 2 are won by the solution with the smaller norms (G1, then G2), pair 1 by the larger; pair 3 has
    too few G2 seeds; pair 4 has the same norms (no clear order); pair 5 a clear order but no clear winner. Against
    hand counts: 5 pairs compared, 4 with a clear winner, 3 counted, 2 of them concordant."""
    rng = np.random.default_rng(0)
    spec = [(0, 1, 10.0, 60), (0, 2, 11.0, 20), (1, 1, 12.0, 70), (1, 2, 11.0, 10), (2, 1, 11.0, 15),
            (2, 2, 10.0, 50), (3, 1, 9.0, 40), (3, 2, 9.5, MIN_SEEDS - 1), (4, 1, 8.0, 30), (4, 2, 8.0, 30),
            (5, 1, 7.0, 30), (5, 2, 7.5, 30)]
    norm = np.concatenate([mean + 0.05 * rng.normal(size=n) for _, _, mean, n in spec])
    variant = np.concatenate([np.full(n, v) for v, _, _, n in spec])
    choice = np.concatenate([np.full(n, c) for _, c, _, n in spec])
    norm = np.concatenate([norm, [np.nan, 1.0]])  # a diverged seed and one that chose neither are ignored
    variant, choice = np.concatenate([variant, [0, 0]]), np.concatenate([choice, [1, 0]])
    got = norm_by_solution(norm, variant, choice, 6, n_boot=500)
    for v in (0, 1, 2, 4, 5):
        mine = [norm[(variant == v) & (choice == c) & np.isfinite(norm)] for c in (1, 2)]
        assert got["norm_g1"][v] == np.median(mine[0]) and got["norm_g2"][v] == np.median(mine[1])
        assert got["g1_smaller"][v] == smaller_probability(mine[0], mine[1])
    assert np.isnan(got["g1_smaller"][3]) and np.isnan(got["norm_ratio"][3]) and np.isnan(got["norm_g1"][3])
    np.testing.assert_allclose(got["norm_ratio"][:3], [10 / 11, 12 / 11, 11 / 10], rtol=0.01)
    np.testing.assert_array_equal(got["g1_smaller"][[0, 1, 2, 5]], [1, 0, 0, 1])  # the norms do not overlap
    assert got["g1_smaller_p"][4] > 0.05 and (got["g1_smaller_p"][[0, 1, 2, 5]] < 1e-4).all()
    assert got["g1_smaller_low"][4] < 0.5 < got["g1_smaller_high"][4]
    share = preference(np.array([80, 70, 10, 40, 50, 30]), np.array([20, 10, 60, 4, 10, 30]))
    r = efficiency_reading(share, got)
    assert (r["n_compared"], r["n_clear"], r["n_counted"], r["counted"]) == (5, 4, 3, [0, 1, 2])
    assert r["concordance"]["count"] == 2


def test_pair_counts_read_each_seed_once(tmp_path):
    """Per pair, seeds that grokked G1 only, G2 only, both, neither, and diverged (whose finite norm is left out)."""
    grokked = np.array([[1, 0]] * 6 + [[0, 1]] * 6 + [[1, 1], [0, 0], [1, 0]], bool)
    variant = np.array([0] * 15)
    diverged = np.array([False] * 14 + [True])
    norm = np.concatenate([np.full(6, 2.0), np.full(6, 3.0), [9.0, 9.0, 0.5]])
    storage.write_arrays(tmp_path / "seeds.npz", {"variant": variant, "grokked": grokked, "diverged": diverged,
                                                  "final_weight_norm": norm})
    counts, norms = pair_counts(tmp_path, 2)
    assert {k: v.tolist() for k, v in counts.items()} == {"g1": [6, 0], "g2": [6, 0], "none": [1, 0],
                                                          "both": [1, 0], "diverged": [1, 0]}
    assert norms["norm_g1"][0] == 2.0 and norms["norm_g2"][0] == 3.0 and norms["g1_smaller"][0] == 1.0
    assert np.isnan(norms["g1_smaller"][1])


def test_the_atlas_command_on_two_pairs(tmp_path, capsys):
    out = tmp_path / "atlas"
    argv = ["--pairs", "D(4)|Z(4,2)", "semi(Z(2,2),Z(2),[0,2,1,3])|Z(2,2,2)", "--n-seeds", "3", "--epochs", "40",
            "--log-every", "20", "--embed-dim", "8", "--hidden-dim", "8", "--out", str(out), "--workers", "1",
            "--no-progress", "--no-figures"]
    code, text, _ = run_main(experiment.main, argv, capsys)
    assert code == 0, text
    info = json.loads((out / "atlas.json").read_text())
    assert [p["intersection"] for p in info["pairs"]] == [48, 48]
    for p in info["pairs"]:
        assert p["g1"] + p["g2"] + p["none"] + p["both"] + p["diverged"] == p["n_seeds"] == 3
    assert info["readings"]["exponent"]["n_pairs"] >= 0 and (out / "order_8" / "seeds.npz").is_file()
    assert set(info["efficiency"]) == {"n_compared", "n_clear", "n_counted", "counted", "concordance"}
    assert all("g1_smaller" in p for p in info["pairs"])  # None here: 3 seeds are too few to compare
    from grokjax.figures import draw

    paths, _ = draw(out, tmp_path / "figures")
    assert [p.name for p in paths] == ["atlas_measures.png", "atlas_balance.png", "atlas_efficiency.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)
    code, _, err = run_main(experiment.main, ["--pairs", "D(4)", "--out", str(tmp_path / "x")], capsys)
    assert code == 2 and "joined by '|'" in err and not (tmp_path / "x").exists()
    code, text, _ = run_main(experiment.main, ["--max-order", "8", "--list"], capsys)
    assert code == 0 and "Z(4):phi1" in text and "3 pairs" in text
