"""LLC by SGLD: closed-form learning coefficients, the exact law of the update, diverged chains, bit identity
across call widths, minibatches, checkpoints, calibration, and the experiment on a results directory."""

import dataclasses
import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import quad

from grokjax.run import storage
from cli_runner import run_main
from grokjax.errors import UserError
from configs import small
from grokjax.figures.llc import llc_correlation_lines
from grokjax.figures.sweep import draw_all
from grokjax.analysis.llc import (LLCConfig, LLCLoss, calibrate, checkpoint_keys, estimate_llc, estimate_llc_checkpoints,
                                  model_loss, split_rhat)
from grokjax.analysis.outcomes import outcome_summary
from grokjax.run.specs import config_json
from grokjax.train import make_trainer, seed_keys

ROOT = Path(__file__).resolve().parents[1]
HESSIAN = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
# L(w) = 1/2 w^T diag(HESSIAN) w: a regular model, lambda = d/2 whatever the (positive) Hessian.
QUADRATIC = LLCLoss(lambda w_star: lambda w, batch: 0.5 * jnp.sum(HESSIAN * w["w"] ** 2))
QUADRATIC_2D = LLCLoss(lambda w_star: lambda w, batch: 0.5 * jnp.sum(w["w"] ** 2))


def polynomial(k1, k2) -> LLCLoss:
    """L(w) = (w1^k1 w2^k2)^2, whose learning coefficient at 0 is 1 / (2 max k)."""
    return LLCLoss(lambda w_star: lambda w, batch: (w["w"][0] ** k1 * w["w"][1] ** k2) ** 2)


def at_zero(n_models: int, dim: int) -> dict:
    return {"w": np.zeros((n_models, dim), np.float32)}


def test_regular_model_gives_half_the_dimension_and_the_exact_law_of_the_discrete_update():
    """Model 0: small steps, lambda = d/2 within 10%. Model 1: steps and localization large enough to move the
    estimate by a quarter, against the exact stationary law of w <- w - (eps/2)(nbeta H + gamma) w + sqrt(eps) xi:
    Var w_i = 1 / (a_i (1 - eps a_i / 4)) with a_i = nbeta h_i + gamma, so E[nbeta L] = sum_i nbeta h_i Var w_i / 2."""
    cfg = LLCConfig(steps=10000, chains=16, models_per_call=2)
    hp = {"eps": [2e-5, 1e-3], "nbeta": [1000.0, 100.0], "gamma": [1.0, 100.0]}
    r = estimate_llc(QUADRATIC, at_zero(2, 4), seed_keys(0, [0, 1]), cfg, hp)
    assert r.llc[0] == pytest.approx(len(HESSIAN) / 2, rel=0.1)
    a = 100.0 * HESSIAN + 100.0
    exact = float(np.sum(100.0 * HESSIAN / (2 * a * (1 - 1e-3 * a / 4))))
    assert exact < 0.8 * len(HESSIAN) / 2  # far enough from d/2 to tell a wrong eps/2, gamma or noise scale
    assert r.llc[1] == pytest.approx(exact, rel=0.05)
    assert np.all(r.n_diverged == 0) and np.all(r.rhat < 1.05)
    assert np.all(r.baseline == 0) and r.loss_trace.shape == (2, 16, 1000)


def test_the_estimate_is_nbeta_times_the_mean_loss_after_burn_in_minus_the_baseline():
    """With thin = 1 the trace holds every L(w_t): the estimate must be nbeta (mean of L(w_t), t >= burn_steps, minus
    L(w*)) exactly, and shifting the burn-in by one step must not reproduce it (so an off-by-one would show)."""
    assert LLCConfig().burn_steps == 1800
    offset = LLCLoss(lambda w_star: lambda w, batch: 0.5 * jnp.sum(HESSIAN * (w["w"] - w_star["w"]) ** 2) + 0.25)
    cfg = LLCConfig(eps=1e-3, nbeta=100.0, steps=100, chains=3, thin=1, models_per_call=2)
    w_star = {"w": np.array([[0.0, 0.0, 0.0, 0.0], [0.5, -1.0, 2.0, 0.0]], np.float32)}
    r = estimate_llc(offset, w_star, seed_keys(0, [0, 1]), cfg)
    assert cfg.burn_steps == 60 and r.loss_trace.shape == (2, 3, 100)
    np.testing.assert_allclose(r.baseline, 0.25)
    trace = r.loss_trace.astype(np.float64)
    expected = lambda burn: cfg.nbeta * (trace[..., burn:].mean(-1) - r.baseline[:, None])
    np.testing.assert_allclose(r.llc_chains, expected(cfg.burn_steps), rtol=1e-5)
    for shifted in (cfg.burn_steps - 1, cfg.burn_steps + 1):
        assert np.abs(r.llc_chains / expected(shifted) - 1).max() > 1e-4
    assert np.all(r.loss_trace[:, :, 0] == np.float32(0.25))  # t = 0 is w*


def test_minibatches_draw_distinct_points_uniformly():
    """Point i contributes 2^i, so each L(w_t) (the mean over the step's minibatch) names the exact points drawn:
    every step must draw `batch_size` distinct points, different ones from step to step and chain to chain, each
    point about equally often; the baseline stays the full-data mean."""
    values = 2.0 ** np.arange(16, dtype=np.float32)
    bits = LLCLoss(lambda w_star: lambda w, batch: jnp.mean(jnp.asarray(values)[batch]) + 0.0 * jnp.sum(w["w"]), 16)
    cfg = LLCConfig(steps=200, chains=4, thin=1, batch_size=4, models_per_call=1)
    r = estimate_llc(bits, at_zero(1, 2), seed_keys(0, [0]), cfg)
    assert r.baseline[0] == pytest.approx(values.mean())
    sums = np.rint(r.loss_trace[0].astype(np.float64) * 4).astype(np.int64)  # (chains, steps)
    drawn = (sums[..., None] >> np.arange(16)) & 1
    assert np.array_equal(drawn @ values.astype(np.int64), sums)  # the value is a sum of distinct points
    assert np.all(drawn.sum(-1) == 4)
    assert len(np.unique(sums)) > 550  # 800 independent draws of 1820 subsets give about 650 distinct ones
    frequency = drawn.mean((0, 1))  # each point is drawn with probability 4/16
    assert np.all(np.abs(frequency - 0.25) < 0.06)


@pytest.mark.parametrize("k, nbeta, eps", [((1, 0), 1e3, 2e-5), ((1, 2), 1e4, 3e-4), ((1, 3), 1e5, 3e-4)],
                         ids=["k=(1,0)", "k=(1,2)", "k=(1,3)"])
def test_singular_models_give_one_over_twice_the_largest_power(k, nbeta, eps):
    cfg = LLCConfig(eps=eps, nbeta=nbeta, steps=20000, chains=64, models_per_call=1)
    r = estimate_llc(polynomial(*k), at_zero(1, 2), seed_keys(0, [0]), cfg)
    assert r.llc[0] == pytest.approx(1 / (2 * max(k)), rel=0.1)
    assert r.n_diverged[0] == 0 and r.rhat[0] < 1.05


def test_normal_crossing_matches_the_tempered_posterior_below_its_coefficient():
    """L = w1^2 w2^2 has lambda = 1/2 with multiplicity 2, so at finite nbeta the estimator's target,
    E[nbeta L] under exp(-nbeta L - gamma |w|^2 / 2), lies about 1/log(nbeta) below 1/2. Integrating w1 out
    (Gaussian given w2) leaves a 1-D integral for it."""
    nbeta, gamma = 1000.0, 1.0
    weight = lambda v: math.exp(-gamma * v * v / 2) / math.sqrt(2 * nbeta * v * v + gamma)
    mean_given = lambda v: nbeta * v * v / (2 * nbeta * v * v + gamma)
    target = quad(lambda v: weight(v) * mean_given(v), 0, 12)[0] / quad(weight, 0, 12)[0]
    assert 0.3 < target < 0.45
    cfg = LLCConfig(eps=1e-4, nbeta=nbeta, gamma=gamma, steps=20000, chains=64, models_per_call=1)
    r = estimate_llc(polynomial(1, 1), at_zero(1, 2), seed_keys(0, [0]), cfg)
    assert r.llc[0] == pytest.approx(target, rel=0.1)


def test_diverged_chains_are_counted_and_left_out():
    """The loss is infinite beyond w1 = 0.096, the median of a chain's largest w1, so about half the chains of
    model 0 reach it; model 1's steps are so large
    that every chain overflows. Model 0's other chains are untouched: they equal a run without the trap."""
    trap = LLCLoss(lambda w_star: lambda w, batch: jnp.where(w["w"][0] > 0.096, jnp.inf, 0.5 * jnp.sum(w["w"] ** 2)))
    free = LLCLoss(lambda w_star: lambda w, batch: 0.5 * jnp.sum(w["w"] ** 2))
    cfg = LLCConfig(eps=1e-4, steps=2000, chains=16, models_per_call=2)
    hp = {"eps": [1e-4, 1e-2], "nbeta": 1000.0, "gamma": 1.0}
    r = estimate_llc(trap, at_zero(2, 2), seed_keys(0, [0, 1]), cfg, hp)
    ref = estimate_llc(free, at_zero(2, 2), seed_keys(0, [0, 1]), cfg, hp)
    kept = np.isfinite(r.llc_chains[0])
    assert 0 < r.n_diverged[0] < 16 and r.n_diverged[0] == np.sum(~kept)
    np.testing.assert_allclose(r.llc_chains[0][kept], ref.llc_chains[0][kept], rtol=1e-5)
    assert r.llc[0] == pytest.approx(np.mean(r.llc_chains[0][kept]), rel=1e-5)
    assert r.llc_std[0] == pytest.approx(np.std(r.llc_chains[0][kept], ddof=1), rel=1e-4)
    assert np.isfinite(r.rhat[0])
    assert r.n_diverged[1] == 16 and np.isnan([r.llc[1], r.llc_std[1], r.rhat[1]]).all()


def reference_split_rhat(draws):
    """Split-R-hat as in Gelman et al., BDA3 (11.4), in float64."""
    half = draws.shape[1] // 2
    x = np.concatenate([draws[:, :half], draws[:, -half:]]).astype(np.float64)
    within = x.var(1, ddof=1).mean()
    between_over_n = x.mean(1).var(ddof=1)
    return np.sqrt(((half - 1) / half * within + between_over_n) / within)


def test_split_rhat_matches_the_reference_and_ignores_invalid_chains():
    rng = np.random.default_rng(0)
    draws = rng.normal(size=(5, 41)).astype(np.float32) + np.array([0, 0, 0.5, 0, 0], np.float32)[:, None]
    valid = np.array([True, True, True, False, True])
    draws[3] = np.nan
    got = split_rhat(jnp.asarray(draws), jnp.asarray(valid))
    assert float(got) == pytest.approx(reference_split_rhat(draws[valid]), rel=1e-5)
    assert math.isnan(split_rhat(jnp.asarray(draws[:, :3]), jnp.asarray(valid)))  # fewer than 2 draws per half


@pytest.fixture(scope="module")
def mlp():
    """A small MLP2 task (S(3) vs A(3) x Z(2), D = H = 8), its trainer and the initial parameters of 6 seeds."""
    cfg = small(epochs=20, log_every=10, n_seeds=6, seeds_per_call=4)
    task, data = cfg.problem.task_of(), cfg.problem.build()
    trainer = make_trainer(data, cfg)
    params = jax.tree.map(np.asarray, jax.vmap(trainer.init)(seed_keys(0, np.arange(6))).params)
    return {"cfg": cfg, "task": task, "data": data, "trainer": trainer, "params": params,
            "loss": model_loss(trainer, data)}


SHORT = LLCConfig(steps=60, chains=2, thin=5, models_per_call=4)  # 4 thinned draws after burn-in


def take(tree, index):
    return jax.tree.map(lambda x: x[np.asarray(index)], tree)


def test_a_model_gives_the_same_bits_alone_or_among_others(mlp):
    every = estimate_llc(mlp["loss"], mlp["params"], seed_keys(7, np.arange(6)), SHORT)
    alone = estimate_llc(mlp["loss"], take(mlp["params"], [5]), seed_keys(7, [5]), SHORT)
    some = estimate_llc(mlp["loss"], take(mlp["params"], [1, 2, 3]), seed_keys(7, [1, 2, 3]), SHORT)
    for name in every._fields:
        assert np.array_equal(getattr(alone, name), getattr(every, name)[5:], equal_nan=True), name
        assert np.array_equal(getattr(some, name), getattr(every, name)[1:4], equal_nan=True), name
    assert np.all(np.isfinite(every.llc)) and len(np.unique(every.llc)) == 6
    np.testing.assert_allclose(every.baseline, jax.vmap(mlp["trainer"].loss)(mlp["params"])[0], rtol=1e-6)


def test_behavioral_llc_starts_at_zero_loss(mlp):
    r = estimate_llc(model_loss(mlp["trainer"], mlp["data"], behavioral=True), take(mlp["params"], [0, 1]),
                     seed_keys(7, [0, 1]), SHORT)
    assert np.all(r.baseline == 0) and np.all(r.loss_trace[:, :, 0] == 0)
    assert np.all(np.isfinite(r.llc)) and np.all(r.loss_trace[:, :, 1:] > 0)


def test_the_mlp_losses_are_kl_from_the_outputs_at_w_star_and_means_over_the_minibatch(mlp):
    """Behavioral: mean over the inputs of KL(softmax f_{w*} || softmax f_w), in float64 numpy (and not the reverse
    KL); standard: mean cross-entropy. With an index array both are the mean of the per-point losses over it."""
    task, trainer = mlp["task"], mlp["trainer"]
    w_star, w = take(mlp["params"], 0), take(mlp["params"], 1)
    left, right = np.divmod(task.train_pairs, task.n)

    def log_softmax(params):
        logits = np.asarray(trainer.apply(params, (jnp.asarray(left), jnp.asarray(right))), np.float64)
        logits -= logits.max(-1, keepdims=True)
        return logits - np.log(np.exp(logits).sum(-1, keepdims=True))

    log_p_star, log_p = log_softmax(w_star), log_softmax(w)
    kl_points = np.sum(np.exp(log_p_star) * (log_p_star - log_p), -1)
    reverse = np.mean(np.sum(np.exp(log_p) * (log_p - log_p_star), -1))
    ce_points = -log_p[np.arange(len(log_p)), task.train_labels]
    behavioral = model_loss(trainer, mlp["data"], behavioral=True).loss_at(w_star)
    standard = mlp["loss"].loss_at(w_star)
    assert float(behavioral(w, None)) == pytest.approx(kl_points.mean(), rel=1e-4)
    assert abs(reverse / kl_points.mean() - 1) > 1e-2  # the test tells the two directions apart
    assert float(behavioral(w_star, None)) == pytest.approx(0, abs=1e-6)
    assert float(standard(w, None)) == pytest.approx(ce_points.mean(), rel=1e-4)
    batch = np.random.default_rng(0).choice(task.n_train, task.n_train // 3, replace=False)
    assert float(behavioral(w, jnp.asarray(batch))) == pytest.approx(kl_points[batch].mean(), rel=1e-4)
    assert float(standard(w, jnp.asarray(batch))) == pytest.approx(ce_points[batch].mean(), rel=1e-4)
    assert abs(kl_points[batch].mean() / kl_points.mean() - 1) > 1e-3  # a real subset, not the full data


def test_a_minibatch_of_every_point_reproduces_the_full_batch(mlp):
    n = mlp["task"].n_train
    full = estimate_llc(mlp["loss"], take(mlp["params"], [0, 1]), seed_keys(7, [0, 1]), SHORT)
    every = estimate_llc(mlp["loss"], take(mlp["params"], [0, 1]), seed_keys(7, [0, 1]),
                         dataclasses.replace(SHORT, batch_size=n))
    np.testing.assert_allclose(every.llc_chains, full.llc_chains, rtol=1e-3)
    with pytest.raises(UserError, match="exceeds"):
        estimate_llc(mlp["loss"], take(mlp["params"], [0]), seed_keys(7, [0]),
                     dataclasses.replace(SHORT, batch_size=n + 1))


def test_checkpoints_are_estimated_like_single_models_with_keys_by_epoch(mlp):
    kept = jax.tree.map(lambda x: x.reshape(2, 3, *x.shape[1:]), mlp["params"])
    keys = checkpoint_keys(7, [0, 1], [0, 10, 20])
    r = estimate_llc_checkpoints(mlp["loss"], kept, keys, SHORT)
    assert r.llc.shape == (2, 3) and r.loss_trace.shape == (2, 3, 2, 12)
    one = estimate_llc(mlp["loss"], take(mlp["params"], [5]), keys[1, 2][None], SHORT)
    assert np.array_equal(one.llc_chains[0], r.llc_chains[1, 2])
    assert np.array_equal(checkpoint_keys(7, [1], [20])[0, 0], keys[1, 2])


def test_calibration_finds_the_stable_step_sizes():
    """For L = |w|^2 / 2 the discretization inflates the estimate by 1 / (1 - eps a / 4), a = nbeta + gamma.
    Up to eps = 4e-4 that is at most 11% and the estimates sit on a plateau; eps = 1e-2 diverges at nbeta = 1000
    (eps a > 4) and at nbeta = 300 runs but is 4 times too large."""
    cal = calibrate(QUADRATIC_2D, at_zero(2, 2), seed_keys(0, [0, 1]), [1e-4, 2e-4, 4e-4, 1e-2], [300.0, 1000.0],
                    LLCConfig(steps=8000, chains=16))
    assert cal.llc.shape == (4, 2, 2)
    assert np.all(cal.n_diverged[3, 1] == 16) and np.all(cal.n_diverged[:3] == 0)
    assert cal.llc[3, 0] == pytest.approx(4.0, rel=0.15)
    assert cal.stable.tolist() == [[True, True], [True, True], [True, True], [False, False]]
    assert cal.recommended_eps.tolist() == pytest.approx([4e-4, 4e-4])
    assert cal.llc[:2] == pytest.approx(1.0, rel=0.1)


def test_config_rejects_bad_settings():
    for bad, match in [(dict(steps=0), "steps"), (dict(steps=100, thin=7), "multiple"), (dict(eps=-1.0), "positive"),
                       (dict(burn_in=1.0), "burn-in"), (dict(gamma=float("nan")), "gamma"),
                       (dict(steps=40), "Only 1 thinned steps follow burn-in"),
                       (dict(steps=60, thin=10), "needs at least 4")]:
        with pytest.raises(UserError, match=match):
            LLCConfig(**bad)
    assert LLCConfig(steps=60, thin=5).trace_steps[-4] == 40  # exactly 4 draws after the 36 burn-in steps
    for eps, nbeta in [([1e-4, 0.0], [100.0]), ([1e-4], [100.0, -1.0]), ([float("nan")], [100.0]), ([], [100.0])]:
        with pytest.raises(UserError):
            calibrate(QUADRATIC_2D, at_zero(1, 2), seed_keys(0, [0]), eps, nbeta)


def write_finished_sweep(root: Path, mlp) -> Path:
    """The files of a finished 6-seed sweep of the `mlp` fixture, with 3 checkpoints per seed (none trained)."""
    root.mkdir()
    task, params = mlp["task"], mlp["params"]
    grokked = np.array([[True, True], [True, False], [False, False], [False, False], [True, False], [False, False]])
    names = [g.name for g in task.groups]
    storage.write_json(root / "config.json", config_json(mlp["cfg"], mlp["data"].summary, {}))
    rng = np.random.default_rng(0)
    epochs = np.array([0, 10, 20])
    storage.write_arrays(root / "traces.npz", {"epochs": epochs, "checkpoint_epochs": epochs,
                                               "group_acc": rng.random((6, 3, 2))})
    storage.write_arrays(root / "seeds.npz", {"seed": np.arange(6), "grokked": grokked,
                                              "final_train_loss": rng.random(6), "final_weight_norm": 10 + rng.random(6)})
    storage.write_json(root / "outcome.json", outcome_summary(grokked, names))
    storage.save_params(root / "params", params)
    storage.save_params(root / "checkpoints", jax.tree.map(lambda x: np.stack([x, x, x], 1), params))
    return root


def run(argv, capsys) -> tuple[int, str, str]:
    """Exit status, stdout and stderr of experiments/llc.py run in this process."""
    import runpy

    module = runpy.run_path(str(ROOT / "experiments" / "llc.py"))
    return run_main(module["main"], argv, capsys)


def test_experiment_estimates_every_seed_and_checkpoint_and_figures_draw_them(tmp_path, mlp, capsys):
    root = write_finished_sweep(tmp_path / "sweep", mlp)
    fast = ["--steps", "40", "--thin", "4", "--chains", "2", "--no-progress"]
    code, out, err = run([str(root), *fast], capsys)
    assert code == 0, err
    saved = storage.read_arrays(root / "llc.npz")
    assert saved["llc"].shape == (6,) and saved["loss_trace"].shape == (6, 2, 10) and np.all(np.isfinite(saved["llc"]))
    settings = json.loads((root / "llc.json").read_text())["settings"]
    assert settings["eps"] == 8e-4 and settings["nbeta"] == 1000 and settings["steps"] == 40
    code, out, err = run([str(root), *fast, "--checkpoints"], capsys)
    assert code == 0, err
    saved = storage.read_arrays(root / "llc_checkpoints.npz")
    assert saved["llc"].shape == (6, 3) and saved["epochs"].tolist() == [0, 10, 20]
    # The last checkpoint holds the final parameters, but its chains use the epoch in their keys.
    assert np.all(np.isfinite(saved["llc"]))
    names = [p.name for p in draw_all(root)]
    assert {"llc_by_outcome.png", "llc_vs_loss_and_norm.png", "llc_over_training.png"} <= set(names)
    lines = llc_correlation_lines(root)
    assert len(lines) == 2 and lines[0].startswith("LLC vs final train loss: Pearson r = ")


def test_experiment_gives_the_same_bits_in_worker_processes(tmp_path, mlp, capsys):
    """6 runs in 3 calls of 2: two pinned worker processes (calls dealt round-robin, each rebuilding the loss from
    the sweep config) return exactly the arrays of the in-process run, in run order."""
    root = write_finished_sweep(tmp_path / "sweep", mlp)
    fast = ["--steps", "40", "--thin", "4", "--chains", "2", "--models-per-call", "2", "--no-progress", "--overwrite"]
    code, out, err = run([str(root), *fast, "--workers", "1"], capsys)
    assert code == 0, err
    alone = storage.read_arrays(root / "llc.npz")
    code, out, err = run([str(root), *fast, "--workers", "2"], capsys)
    assert code == 0, err
    assert "2 worker processes" in out
    pooled = storage.read_arrays(root / "llc.npz")
    assert sorted(pooled) == sorted(alone) and len(np.unique(alone["llc"])) == 6
    for name in alone:
        assert np.array_equal(pooled[name], alone[name], equal_nan=True), name


def test_experiment_calibrates_with_a_plot(tmp_path, mlp, capsys):
    root = write_finished_sweep(tmp_path / "sweep", mlp)
    code, out, err = run([str(root), "--calibrate", "--first", "2", "--steps", "40", "--thin", "4", "--chains", "2",
                          "--eps-grid", "1e-4", "1e-3", "--nbeta-grid", "100", "1000"], capsys)
    assert code == 0, err
    cal = storage.read_arrays(root / "llc_calibration.npz")
    assert cal["llc"].shape == (2, 2, 2) and cal["stable"].shape == (2, 2)
    assert (root / "figures" / "llc_calibration.png").read_bytes()[:4] == b"\x89PNG"
    assert "largest stable eps" in out


def test_experiment_refuses_an_unfinished_sweep_or_replacing_results(tmp_path, mlp, capsys):
    root = write_finished_sweep(tmp_path / "sweep", mlp)
    (root / "outcome.json").unlink()
    code, out, err = run([str(root)], capsys)
    assert code == 2 and "outcome.json is missing" in err and len(err.strip().splitlines()) == 1
    assert not list(root.glob("*llc*"))
    code, out, err = run([str(root.parent / "nowhere")], capsys)
    assert code == 2 and "does not exist" in err
    storage.write_json(root / "outcome.json", {})
    (root / "checkpoints").rename(root / "elsewhere")
    code, out, err = run([str(root), "--checkpoints"], capsys)
    assert code == 2 and "--keep-every" in err and not list(root.glob("*llc*"))
    (root / "llc.npz").write_bytes(b"earlier")
    code, out, err = run([str(root), "--steps", "40", "--thin", "4"], capsys)
    assert code == 2 and "--overwrite" in err and (root / "llc.npz").read_bytes() == b"earlier"
    code, out, err = run([str(root), "--steps", "40"], capsys)  # one thinned draw after burn-in
    assert code == 2 and "needs at least 4" in err and len(err.strip().splitlines()) == 1
    code, out, err = run([str(root), "--calibrate", "--overwrite", "--eps-grid", "1e-4", "0"], capsys)
    assert code == 2 and "positive" in err and (root / "llc.npz").read_bytes() == b"earlier"


def test_experiment_writes_both_results_or_neither_and_reports_undetermined_rhat(tmp_path, monkeypatch):
    from grokjax.run.llc import _rhat_line
    from grokjax.run.outdir import write_together

    outputs = [tmp_path / "llc.npz", tmp_path / "llc.json"]
    outputs[0].write_bytes(b"earlier")
    writers = {outputs[0]: lambda path: storage.write_arrays(path, {"llc": np.ones(2)}),
               outputs[1]: lambda path: storage.write_json(path, {"kind": "llc"})}

    def fail(path, obj):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(storage, "write_json", fail)
    with pytest.raises(UserError, match="No space left on device") as e:
        write_together(writers)
    assert "\n" not in str(e.value) and outputs[0].read_bytes() == b"earlier"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["llc.npz"]  # no partial files left behind
    monkeypatch.undo()
    write_together(writers)
    assert storage.read_arrays(outputs[0])["llc"].tolist() == [1, 1]
    assert storage.read_json(outputs[1]) == {"kind": "llc"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["llc.json", "llc.npz"]
    line = _rhat_line(np.array([1.01, 1.2, np.nan]), 4, np.array([0, 0, 3]))
    assert "split-R-hat above 1.1: 1 of 3" in line and "undetermined (NaN" in line and line.endswith(": 1")
