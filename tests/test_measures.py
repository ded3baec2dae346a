"""Generalization measures (Jiang et al.): spectral norms against numpy's SVD, path norms against hand-enumerated
paths, the margin and every measure against numpy, the sigma bisection against a closed form, the job on a real
sweep (final and checkpoints) and its figures."""

import itertools
import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import erf
from scipy.stats import kendalltau

from cli_runner import run_main
from configs import small
from grokjax.analysis.measures import (MEASURES, MeasuresConfig, generalization_measures, margin_percentile, path_norm,
                                       sigma_search, spectral_norm, spectral_norms, weight_matrices)
from grokjax.figures.measures import (draw_measures, kendall_rows, measures_correlation_lines, outcome_correlations)
from grokjax.models.base import flax_model
from grokjax.models.linear import Linear
from grokjax.models.mlp2 import MLP2
from grokjax.models.mlp3 import MLP3
from grokjax.run import storage
from grokjax.run.results import load_sweep
from grokjax.run.sweep import run_sweep

ROOT = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(0)


def test_spectral_norm_agrees_with_numpy_svd_and_layers_are_the_weights():
    matrices = RNG.normal(size=(5, 7, 3)).astype(np.float32)
    expected = np.linalg.svd(matrices.astype(np.float64), compute_uv=False)[:, 0]
    np.testing.assert_allclose(jax.vmap(spectral_norm)(jnp.asarray(matrices)), expected, rtol=1e-5)
    assert float(spectral_norm(jnp.diag(jnp.array([1.0, -4.0, 2.0])))) == pytest.approx(4.0)
    mixed = [RNG.normal(size=shape).astype(np.float32) for shape in ((6, 2), (2, 9), (4, 4))]  # padded to (6, 9)
    np.testing.assert_allclose(spectral_norms([jnp.asarray(m) for m in mixed]),
                               [np.linalg.svd(m.astype(np.float64), compute_uv=False)[0] for m in mixed], rtol=1e-5)
    params = {"w_a": np.ones((2, 3, 4)), "b_a": np.ones(3), "embed": np.ones((5, 2))}
    assert [m.shape for m in weight_matrices(params)] == [(5, 2), (2, 12)]  # biases left out, tensors as matrices


def _model(module, shapes: dict, *example):
    """The pure pair of `module` and hand-built parameters: small integers of the given shapes."""
    return (flax_model(module, example),
            {k: jnp.asarray(RNG.integers(-3, 4, size=shape), jnp.float32) for k, shape in shapes.items()})


jit_path_norm = jax.jit(path_norm, static_argnums=0)  # op by op, flax's apply takes seconds


def test_path_norm_of_hand_built_two_layer_nets_matches_the_sum_over_paths():
    """MLP2 on N = 3 tokens, D = H = 2: the path norm is the sum over every input token (left or right), embedding
    unit, hidden unit and output of the product of the squared weights on the path, plus the squared biases."""
    tok = jnp.zeros(1, jnp.int32)
    model, p = _model(MLP2(3, 2, 2), {"embed_left": (3, 2), "embed_right": (3, 2), "w_left": (2, 2),
                                      "w_right": (2, 2), "w_unembed": (2, 3), "b_unembed": (3,)}, tok, tok)
    q = {k: np.asarray(v, np.float64) ** 2 for k, v in p.items()}
    by_hand = sum(q[f"embed_{s}"][a, d] * q[f"w_{s}"][d, k] * q["w_unembed"][k, c]
                  for s in ("left", "right") for a, d, k, c in itertools.product(range(3), range(2), range(2), range(3)))
    by_hand += q["b_unembed"].sum()
    assert float(jit_path_norm(model.apply, p, (tok, tok))) == pytest.approx(by_hand, rel=1e-6)
    # a network whose pre-activations the squares do not make positive would differ: relu of the signed network
    assert not np.isclose(by_hand, np.abs(np.asarray(jax.jit(model.apply)(p, (tok, tok)))).sum())

    model, p = _model(MLP3(3, 2, 4), {"embed_left": (3, 2), "embed_right": (3, 2), "w_hidden": (2, 4),
                                      "w_unembed": (4, 3), "b_unembed": (3,)}, tok, tok)  # one hidden map shared by both embeddings: paths through it twice
    q = {k: np.asarray(v, np.float64) ** 2 for k, v in p.items()}
    by_hand = sum(q[f"embed_{s}"][a, d] * q["w_hidden"][d, k] * q["w_unembed"][k, c]
                  for s in ("left", "right") for a, d, k, c in itertools.product(range(3), range(2), range(4), range(3)))
    assert float(jit_path_norm(model.apply, p, (tok, tok))) == pytest.approx(by_hand + q["b_unembed"].sum(), rel=1e-6)

    model, p = _model(Linear(3, 6, 3), {"w_in_0": (3, 3), "w_in_1": (3, 3), "b_out": (3,)}, tok, tok)  # one layer: every squared parameter is one path
    assert float(jit_path_norm(model.apply, p, (tok, tok))) == pytest.approx(sum(float(np.sum(np.square(v)))
                                                                             for v in p.values()))
    x = jnp.zeros((1, 4), jnp.float32)  # real-valued features: the all-ones input itself
    model, p = _model(Linear(0, 4, 2), {"w_in": (4, 2), "b_out": (2,)}, x)
    assert float(jit_path_norm(model.apply, p, (x,))) == pytest.approx(float(np.sum(np.square(p["w_in"])) +
                                                                         np.sum(np.square(p["b_out"]))))


def test_margin_is_the_absolute_tenth_percentile_of_true_minus_best_other_logit():
    logits = RNG.normal(size=(37, 5)).astype(np.float32)
    labels = RNG.integers(0, 5, 37)
    others = np.where(np.eye(5, dtype=bool)[labels], -np.inf, logits).max(1)
    margins = np.sort(logits[np.arange(37), labels] - others)
    assert margins[2] < 0  # the 3rd smallest (37 // 10) is negative here: abs matters
    assert float(margin_percentile(jnp.asarray(logits), jnp.asarray(labels))) == pytest.approx(abs(margins[2]))
    assert float(margin_percentile(jnp.asarray(logits[:7]), jnp.asarray(labels[:7]))) == pytest.approx(
        abs(np.sort(logits[np.arange(7), labels[:7]] - others[:7])[0]))


def test_every_measure_matches_a_numpy_computation():
    w = {"w_a": RNG.normal(size=(4, 3)), "w_b": RNG.normal(size=(3, 5)), "b_b": RNG.normal(size=5)}
    w0 = {k: v + 0.3 * RNG.normal(size=v.shape) for k, v in w.items()}
    gamma, path, sigma, mag, m, eps = 0.7, 12.0, 0.3, 0.05, 50, 1e-3
    got = jax.jit(generalization_measures, static_argnums=(6, 7))(
        jax.tree.map(jnp.float32, w), jax.tree.map(jnp.float32, w0), gamma, path, sigma, mag, m, eps)
    assert sorted(got) == sorted(MEASURES)
    layers, dist = [w["w_a"], w["w_b"]], [w["w_a"] - w0["w_a"], w["w_b"] - w0["w_b"]]
    spec = np.array([np.linalg.svd(x, compute_uv=False)[0] ** 2 for x in layers])
    dspec = np.array([np.linalg.svd(x, compute_uv=False)[0] ** 2 for x in dist])
    fro, dfro = np.array([np.sum(x**2) for x in layers]), np.array([np.sum(x**2) for x in dist])
    wv, dv = np.concatenate([x.ravel() for x in layers]), np.concatenate([x.ravel() for x in dist])
    lm = 2 * np.log(gamma)
    mag_bound = lambda ref: (np.sum(np.log((eps**2 + (mag**2 + 1) * np.sum(ref**2) / wv.size)
                                           / (eps**2 + mag**2 * dv**2))) / 4 + np.log(m / mag) + 10)
    raw = {"L2": np.linalg.norm(wv), "L2_DIST": np.linalg.norm(dv), "INVERSE_MARGIN": gamma**-2,
           "LOG_PROD_OF_SPEC": np.log(spec).sum(), "LOG_PROD_OF_SPEC_OVER_MARGIN": np.log(spec).sum() - lm,
           "LOG_SPEC_INIT_MAIN": np.log(spec).sum() - lm + np.log(np.sum(dfro / spec)),
           "FRO_OVER_SPEC": np.sum(fro / spec), "LOG_SPEC_ORIG_MAIN": np.log(spec).sum() - lm + np.log(np.sum(fro / spec)),
           "LOG_SUM_OF_SPEC_OVER_MARGIN": np.log(2) + (np.log(spec).sum() - lm) / 2,
           "LOG_SUM_OF_SPEC": np.log(2) + np.log(spec).sum() / 2,
           "LOG_PROD_OF_FRO": np.log(fro).sum(), "LOG_PROD_OF_FRO_OVER_MARGIN": np.log(fro).sum() - lm,
           "LOG_SUM_OF_FRO_OVER_MARGIN": np.log(2) + (np.log(fro).sum() - lm) / 2,
           "LOG_SUM_OF_FRO": np.log(2) + np.log(fro).sum() / 2,
           "FRO_DIST": dfro.sum(), "DIST_SPEC_INIT": dspec.sum(), "PARAM_NORM": fro.sum(),
           "PATH_NORM": path, "PATH_NORM_OVER_MARGIN": path / gamma**2,
           "PACBAYES_INIT": np.sum(dv**2) / (4 * sigma**2) + np.log(m / sigma) + 10,
           "PACBAYES_ORIG": np.sum(wv**2) / (4 * sigma**2) + np.log(m / sigma) + 10, "PACBAYES_FLATNESS": sigma**-2,
           "PACBAYES_MAG_INIT": mag_bound(dv), "PACBAYES_MAG_ORIG": mag_bound(wv), "PACBAYES_MAG_FLATNESS": mag**-2}
    for k, v in raw.items():
        expected = 0.5 * (v - np.log(m)) if k.startswith("LOG_") else np.sqrt(v / m)
        assert float(got[k]) == pytest.approx(expected, rel=2e-5, abs=1e-6), k


def test_sigma_search_finds_the_closed_form_sigma():
    """accuracy = share of the n coordinates within 0.5 of their unperturbed value: under N(0, s^2) noise its mean is
    erf(0.5 / (s sqrt 2)), so a drop of 0.1 is at s* = 0.5 / 1.6449 = 0.304. With w_i = 2 magnitude-aware noise has
    s^2 = 4 sigma^2 + eps^2: sigma* = 0.152 (the reference's standard deviation sigma^2 |w| would give 0.39)."""
    n, cfg = 20000, MeasuresConfig(samples=4)
    accuracy_of = lambda p: jnp.mean(jnp.abs(p["w"] - 2.0) < 0.5)
    params = {"w": jnp.full(n, 2.0)}
    drop = lambda s: 1 - erf(0.5 / (s * math.sqrt(2)))
    search = jax.jit(sigma_search, static_argnums=(0, 3, 4))
    sigma = float(search(accuracy_of, params, jax.random.PRNGKey(0), cfg))
    assert abs(drop(sigma) - 0.1) < 0.012 and sigma == pytest.approx(0.304, rel=0.05)
    assert (sigma * 2**15 / cfg.sigma_max) % 1 == 0  # a bisection midpoint of [0, 2]
    mag = float(search(accuracy_of, params, jax.random.PRNGKey(0), cfg, True))
    assert abs(drop(math.sqrt(4 * mag**2 + 1e-6)) - 0.1) < 0.012 and mag == pytest.approx(0.152, rel=0.05)
    deep = MeasuresConfig(samples=4, tolerance=1e-9, search_depth=6)  # never within tolerance: the last midpoint
    assert float(search(accuracy_of, params, jax.random.PRNGKey(0), deep)) * 64 % 1 == 0


def test_kendall_helpers_match_scipy():
    x, y = RNG.integers(0, 4, (6, 9)).astype(float), RNG.normal(size=(6, 9))
    expected = [kendalltau(a, b).statistic for a, b in zip(x, y)]
    np.testing.assert_allclose(kendall_rows(x, y), expected, rtol=1e-12)
    x[2, 3] = np.nan
    assert np.isnan(kendall_rows(x, y)[2]) and np.isfinite(kendall_rows(x, y)[3])
    sweep = {"group_names": ["G", "H"], "diverged": np.zeros(4, bool),
             "seeds": {"grokked": np.array([[0, 1], [0, 1], [1, 1], [1, 1]], bool)},
             "traces": {"train_acc": np.ones((4, 1)), "group_acc": np.array([[[0.1, 1]], [[0.2, 1]], [[1, 1]], [[1, 1]]])}}
    corr = outcome_correlations(sweep, {"run": np.arange(4), "M": np.array([1.0, 2.0, 3.0, 4.0])})
    assert corr["M"]["G"][0] == pytest.approx(4 / math.sqrt(6 * 4))  # 4 untied pairs, all concordant
    assert np.isnan(corr["M"]["H"][0])  # every run reached H: no correlation to speak of


def run(argv, capsys):
    import runpy

    return run_main(runpy.run_path(str(ROOT / "experiments" / "measures.py"))["main"], argv, capsys)


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("measures") / "sweep"
    run_sweep(small(epochs=20, log_every=5, keep_every=10, n_seeds=4, seeds_per_call=4, lr=3e-2), root, workers=1,
              progress=False, log=lambda *_: None, cache_dir=None)
    return root


def test_experiment_measures_every_run_and_checkpoint_and_draws_them(sweep_dir, capsys):
    root = sweep_dir
    leaf = root / "params" / json.loads((root / "params" / "leaves.json").read_text())["leaves"]["w_left"]
    broken = np.load(leaf)
    broken[3] = np.nan  # run 3's final parameters are not finite: its row must be NaN, the others untouched
    np.save(leaf, broken)
    fast = ["--search-depth", "6", "--samples", "3", "--models-per-call", "4", "--workers", "1", "--no-progress"]
    code, out, err = run([str(root), *fast], capsys)
    assert code == 0, err
    final = storage.read_arrays(root / "measures.npz")
    assert final["L2"].shape == (4,) and np.all(np.isnan([final[k][3] for k in MEASURES]))
    assert all(np.all(np.isfinite(final[k][:3])) for k in MEASURES if k != "LOG_SPEC_INIT_MAIN")
    sweep = load_sweep(root)
    np.testing.assert_allclose(final["train_acc"][:3], sweep["traces"]["train_acc"][:3, -1])
    assert "median by outcome" in out and json.loads((root / "measures.json").read_text())["settings"]["samples"] == 3

    code, out, err = run([str(root), *fast, "--checkpoints"], capsys)
    assert code == 0, err
    ckpt = storage.read_arrays(root / "measures_checkpoints.npz")
    assert ckpt["L2"].shape == (4, 3) and ckpt["epochs"].tolist() == [0, 10, 20]
    # epoch 0 holds the init: the job redraws the same init from the run's key (to rounding: another compiled
    # program), so the distance is 0 there (reported as sqrt(distance / m), which magnifies rounding)
    assert np.all(ckpt["L2_DIST"][:, 0] < 1e-3) and np.all(ckpt["L2_DIST"][:, 1:] > 0.1)
    np.testing.assert_allclose(ckpt["train_acc"], sweep["traces"]["train_acc"][:, ::2])
    for k in ("L2", "L2_DIST", "LOG_PROD_OF_SPEC", "PATH_NORM", "INVERSE_MARGIN"):  # no noise: as the final ones
        np.testing.assert_allclose(ckpt[k][:3, -1], final[k][:3], rtol=1e-5, err_msg=k)
    assert np.all(np.isfinite(ckpt["L2"][3]))  # run 3's checkpoints were not broken

    code, out, err = run([str(root), *fast], capsys)
    assert code == 2 and "--overwrite" in err
    paths = []
    draw_measures(sweep, lambda name, fig: paths.append((name, fig)))
    assert [name for name, _ in paths] == ["measures_over_training", "measures_correlation"]
    lines = measures_correlation_lines(root)
    assert len(lines) == len(MEASURES) + 1 and lines[-1].startswith("tracking the gap")
    (root / "checkpoints").rename(root / "elsewhere")
    try:
        code, out, err = run([str(root), "--checkpoints", "--overwrite"], capsys)
        assert code == 2 and "--keep-every" in err
    finally:
        (root / "elsewhere").rename(root / "checkpoints")


def test_experiment_refuses_a_missing_sweep_and_bad_settings(tmp_path, capsys):
    code, out, err = run([str(tmp_path / "nowhere")], capsys)
    assert code == 2 and "does not exist" in err
    code, out, err = run([str(tmp_path), "--samples", "0"], capsys)
    assert code == 2 and "samples" in err and len(err.strip().splitlines()) == 1
