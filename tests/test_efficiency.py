"""Circuit efficiency: the crossing of two norm curves and its bootstrap interval on curves with a known crossing,
the norm and logit margin of a hand-built linear model, a small study end to end; the ungrok and semi-grok
detectors on curves with known answers; the ungrokking continuation (the large set's copy goes on bit for bit)."""

import dataclasses
import importlib.util
import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from cli_runner import run_main
from grokjax.analysis.efficiency import TARGET_MARGIN, crossing, d_crit, norm_at_margin, per_size_means
from grokjax.models import LinearSpec, MLP2Spec, OneHotMLPSpec
from grokjax.models.base import homogeneity
from grokjax.problems import ModularProblem
from grokjax.run.specs import SweepConfig
from grokjax.train import Schedule, make_trainer

SCRIPT = Path(__file__).parents[1] / "experiments" / "circuit_efficiency.py"
spec = importlib.util.spec_from_file_location("circuit_efficiency", SCRIPT)
experiment = importlib.util.module_from_spec(spec)
spec.loader.exec_module(experiment)


def test_the_crossing_is_linear_between_sizes_and_nan_when_the_curves_do_not_meet():
    sizes = [10, 20, 30]
    assert crossing(sizes, [1, 3, 5], [4, 4, 4]) == 25.0  # gap -3, -1, +1: halfway from 20 to 30
    assert crossing(sizes, [1, 3, 5], [np.nan, 4, 4]) == 25.0  # a size without generalizing runs is skipped
    assert np.isnan(crossing(sizes, [1, 2, 3], [4, 4, 4]))  # never reaches
    assert np.isnan(crossing(sizes, [5, 6, 7], [4, 4, 4]))  # already above at the smallest size
    assert crossing(sizes, [4, 6, 7], [4, 4, 4]) == 10.0


def test_d_crit_recovers_a_known_crossing_with_an_interval_that_holds_it():
    rng = np.random.default_rng(0)
    sizes, seeds = np.array([10, 20, 30, 40]), 30
    size_of = np.repeat(np.arange(4), seeds)
    mem = (1 + 0.1 * sizes)[size_of] + rng.normal(0, 0.05, size_of.size)  # crosses 4 at D = 30
    gen = np.full(size_of.size, 4.0) + rng.normal(0, 0.05, size_of.size)
    np.testing.assert_allclose(per_size_means(mem, size_of, 4), (1 + 0.1 * sizes), atol=0.05)
    out = d_crit(sizes, mem, size_of, gen, size_of)
    assert abs(out["d_crit"] - 30) < 1 and out["ci_low"] < 30 < out["ci_high"] and out["ci_high"] - out["ci_low"] < 3
    assert out["crossed_fraction"] == 1.0


def test_a_hand_built_linear_model_has_the_norm_and_margin_of_a_hand_computation():
    data = ModularProblem(p=5, fraction=0.6).build()
    cfg = SweepConfig(problem=ModularProblem(p=5, fraction=0.6), model=LinearSpec(), schedule=Schedule(length=1, log_every=1))
    trainer = make_trainer(data, cfg)
    eye = np.eye(5, dtype=np.float32)
    params = {"w_in_0": jnp.asarray(2 * eye), "w_in_1": jnp.asarray(3 * eye), "b_out": jnp.ones(5)}
    m = trainer.metrics(params)
    assert np.isclose(m.weight_norm, np.sqrt(4 * 5 + 9 * 5))  # the bias is not a weight
    x, y = data.inputs[data.train_idx].T
    logits = 2 * eye[x] + 3 * eye[y] + 1
    true = logits[np.arange(len(x)), data.train_labels]
    others = np.where(eye[data.train_labels] > 0, -np.inf, logits).max(1)
    np.testing.assert_allclose(m.mean_margin, (true - others).mean(), rtol=1e-6)
    np.testing.assert_allclose(m.margin, (true - others).min(), rtol=1e-6)


def test_homogeneous_models_reach_the_fixed_margin_at_the_predicted_norm():
    import jax

    from grokjax.optim import OptimizerSpec

    data = ModularProblem(p=7, fraction=0.5).build()
    for spec, degree in ((OneHotMLPSpec(hidden_dim=16), 3), (MLP2Spec(8, 8, unembed_bias=False), 3),
                         (LinearSpec(bias=False), 1), (MLP2Spec(8, 8), None), (LinearSpec(), None)):
        assert homogeneity(spec) == degree
        if degree is None:
            continue
        cfg = SweepConfig(problem=ModularProblem(p=7, fraction=0.5), model=spec, schedule=Schedule(200, 200),
                          optimizer=OptimizerSpec(kind="adamw", lr=1e-2, weight_decay=0.0))
        trainer = make_trainer(data, cfg)
        params = trainer.train(jax.random.PRNGKey(1), cfg.hparams())[0].params
        x = data.columns()
        np.testing.assert_allclose(trainer.apply(jax.tree.map(lambda w: 1.7 * w, params), x),
                                   1.7 ** degree * trainer.apply(params, x), rtol=2e-5, atol=1e-5)
        m = trainer.metrics(params)
        assert m.mean_margin > 0, spec  # trained: the true logit leads on average
        want = norm_at_margin(m.weight_norm, m.mean_margin, degree)
        scaled = jax.tree.map(lambda w: (want / m.weight_norm) * w, params)
        np.testing.assert_allclose(trainer.metrics(scaled).mean_margin, TARGET_MARGIN, rtol=1e-4)
        np.testing.assert_allclose(trainer.metrics(scaled).weight_norm, want, rtol=1e-5)
    assert np.isnan(norm_at_margin(3.0, -1.0, 3))


def test_a_small_study_end_to_end_and_its_refusals(tmp_path, capsys):
    argv = ["--p", "5", "--fraction", "0.4", "0.8", "--weight-decay", "0.1", "1", "--n-seeds", "2", "--epochs",
            "20", "--log-every", "10", "--model", "linear", "--out", str(tmp_path / "e"), "--no-progress",
            "--workers", "1"]
    code, out, err = run_main(experiment.main, argv, capsys)
    assert code == 0, err
    info = json.loads((tmp_path / "e" / "efficiency.json").read_text())
    assert info["sizes"] == [10, 20] and [w["weight_decay"] for w in info["weight_decays"]] == [0.1, 1.0]
    arrays = np.load(tmp_path / "e" / "efficiency.npz")
    at = (arrays["memorizing/weight_decay"] == np.float32(1.0)) & (arrays["memorizing/fraction"] == np.float32(0.8))
    row = info["weight_decays"][1]["sizes"][1]
    np.testing.assert_allclose(row["memorizing_norm"]["mean"], arrays["memorizing/final_weight_norm"][at].mean())
    assert "D_crit" in out
    code, _, err = run_main(experiment.main, argv[:2] + ["--fraction", "0.5", "--out", str(tmp_path / "x")], capsys)
    assert code == 2 and "at least two training fractions" in err and not (tmp_path / "x").exists()
    code, _, err = run_main(experiment.main, ["--problem", "groups", "--fraction", "0.3", "0.6", "--out",
                                              str(tmp_path / "g")], capsys)
    assert code == 2 and "does not depend on its fraction" in err and not (tmp_path / "g").exists()


def test_groups_on_shared_labels_get_a_generalizing_curve_per_group(tmp_path, capsys):
    out = tmp_path / "g"
    argv = ["--problem", "groups", "--groups", "D(4)", "Z(4,2)", "--task", "intersection_fraction", "--fraction",
            "0.5", "1.0", "--n-seeds", "3", "--epochs", "30", "--log-every", "10", "--model", "mlp2", "--embed-dim",
            "8", "--hidden-dim", "8", "--no-unembed-bias", "--optimizer", "adamw", "--lr", "0.03", "--out", str(out),
            "--no-progress", "--workers", "1"]
    code, text, err = run_main(experiment.main, argv, capsys)
    assert code == 0, err
    info = json.loads((out / "efficiency.json").read_text())
    assert info["homogeneity"] == 3 and info["sizes"] == [24, 48]
    by_set = info["weight_decays"][0]["by_set"]
    seeds = np.load(out / "generalizing" / "seeds.npz")
    assert [b["set"] for b in by_set] == ["D(4)", "Z(4,2)"]
    for k, b in enumerate(by_set):
        for i, f in enumerate((0.5, 1.0)):
            at = seeds["fraction"] == np.float32(f)
            assert b["grokked"][i]["count"] == int(seeds["grokked"][at, k].sum())
    assert "D(4): grokked per size" in text


def test_ungrok_and_semi_grok_detectors_on_curves_with_known_answers():
    from grokjax.analysis.regimes import semi_grokked, ungrokked

    assert ungrokked([0.99, 0.99, 0.5, np.nan], [0.4, 0.97, 0.1, 0.1]).tolist() == [True, False, False, False]
    epochs = np.arange(0, 1000, 10)
    t = epochs / 1000
    fitted = np.where(epochs >= 100, 1.0, 0.5)
    rows = {
        "semi": (fitted, np.where(epochs >= 100, np.minimum(0.1 + t, 0.6), 0.05)),  # rises after the fit, 0.6
        "full": (fitted, np.where(epochs >= 100, np.minimum(0.1 + 2 * t, 1.0), 0.05)),  # reaches 1
        "flat": (fitted, np.full(len(epochs), 0.5)),  # never rose after fitting
        "unfitted": (np.full(len(epochs), 0.9), np.where(epochs >= 100, np.minimum(0.1 + t, 0.6), 0.05)),
        "noisy": (fitted, np.where(epochs >= 100, 0.5 + 0.2 * (np.arange(len(epochs)) % 2), 0.05)),  # unsettled
        "diverged": (fitted, np.full(len(epochs), np.nan)),
    }
    got = semi_grokked(epochs, np.stack([r[0] for r in rows.values()]), np.stack([r[1] for r in rows.values()]))
    assert dict(zip(rows, got.tolist())) == {"semi": True, "full": False, "flat": False, "unfitted": False,
                                             "noisy": False, "diverged": False}


def test_ungrok_continues_each_run_on_each_smaller_set_and_the_large_one_as_if_never_stopped(tmp_path, capsys):
    from grokjax.run.sweep import read_sweep_config, run_sweep

    argv = ["--ungrok", "0.9", "--p", "5", "--fraction", "0.4", "--n-seeds", "2", "--epochs", "20", "--log-every",
            "10", "--continue-epochs", "20", "--model", "linear", "--lr", "0.05", "--out", str(tmp_path / "u"),
            "--no-progress", "--workers", "1"]
    code, out, err = run_main(experiment.main, argv, capsys)
    assert code == 0, err
    got = np.load(tmp_path / "u" / "ungrok.npz")
    np.testing.assert_array_equal(got["fraction"], np.float32([0.4, 0.4, 0.9, 0.9]))
    assert got["heldout_acc"].shape == (4, 2) and got["epochs"].tolist() == [30, 40]
    info = json.loads((tmp_path / "u" / "ungrok.json").read_text())
    assert [(r["fraction"], r["size"]) for r in info["rows"]] == [(0.4, 10), (0.9, 22)]
    cfg = read_sweep_config(tmp_path / "u" / "large")  # the large sweep, trained on without stopping
    cfg = dataclasses.replace(cfg, schedule=dataclasses.replace(cfg.schedule, length=40))
    run_sweep(cfg, tmp_path / "long", workers=1, progress=False, log=lambda *_: None, cache_dir=None)
    long = np.load(tmp_path / "long" / "traces.npz")
    np.testing.assert_array_equal(got["heldout_acc"][2:], long["heldout_acc"][:, -2:])
    np.testing.assert_array_equal(got["train_acc"][2:], long["train_acc"][:, -2:])
    from grokjax.figures import draw

    assert [q.name for q in draw(tmp_path / "u")[0]] == ["ungrok.png"]


def test_semi_grok_study_counts_the_detector_on_its_own_traces(tmp_path, capsys):
    from grokjax.analysis.regimes import semi_grokked

    argv = ["--semi-grok", "--p", "5", "--fraction", "0.4", "0.8", "--n-seeds", "2", "--epochs", "20",
            "--log-every", "10", "--model", "linear", "--out", str(tmp_path / "s"), "--no-progress", "--workers", "1"]
    code, out, err = run_main(experiment.main, argv, capsys)
    assert code == 0, err
    info = json.loads((tmp_path / "s" / "semigrok.json").read_text())
    traces = np.load(tmp_path / "s" / "semigrok" / "traces.npz")
    semi = semi_grokked(traces["epochs"], traces["train_acc"], traces["heldout_acc"])
    assert [r["semi_grokked"]["count"] for r in info["rows"]] == [int(semi[:2].sum()), int(semi[2:].sum())]
    assert [(r["size"], r["runs"]) for r in info["rows"]] == [(10, 2), (20, 2)] and "semi-grokked" in out
    from grokjax.figures import draw

    assert [q.name for q in draw(tmp_path / "s")[0]] == ["semigrok.png"]
