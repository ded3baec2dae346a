"""Training Jacobians against closed forms (GD on a quadratic, pure weight decay) and central finite
differences of the real training map (float64); jacfwd, column batches and matrix-free top-k against each
other; the experiment's command line (against the sweep's own training) and figures."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from grokjax.analysis import jacobian as jac
from cli_runner import run_main
from grokjax.errors import UserError
from grokjax.figures.jacobian import draw_jacobian, is_jacobian_results, load_jacobian
from configs import small
from grokjax.optim import make_optimizer
from grokjax.problems import GroupsProblem
from grokjax.train import make_trainer, seed_keys

ROOT = Path(__file__).resolve().parents[1]
PROBLEM = GroupsProblem(("Z(5)",), "iid", 0.6)
TASK, DATA = PROBLEM.task_of(), PROBLEM.build()
EPOCHS = (0, 1, 4, 9)
# GD on ½ wᵀAw multiplies w by M = I - ηA each step. Eigenvalues m of M: two directions kept (m = 1, the
# bulk), one amplified, two shrunk, two shrunk with a sign flip every step; the |m| are otherwise distinct.
M_EIGS = np.array([1.0, 1.0, 1.3, 0.8, -0.7, 0.5, -0.3])
ETA = 0.5


def quadratic(dtype=jnp.float32):
    """Dynamics of GD on ½ wᵀAw with A = (I - M)/η, M = Q diag(M_EIGS) Qᵀ; returns (dyn, w0, Q)."""
    q = np.linalg.qr(np.random.default_rng(0).normal(size=(7, 7)))[0]
    a = jnp.asarray((q * (1 - M_EIGS) / ETA) @ q.T, dtype)
    dyn = jac.Dynamics(start=lambda w: w, step=lambda w: w - ETA * a @ w, params=lambda w: w)
    return dyn, jnp.asarray(np.random.default_rng(1).normal(size=7), dtype), q


def closed_form(q, t):
    return (q * M_EIGS**t) @ q.T


def test_gd_on_a_quadratic_gives_powers_of_i_minus_eta_a_by_every_method():
    dyn, w0, q = quadratic()
    expected = np.stack([closed_form(q, t) for t in EPOCHS])
    dense = jac.jacobian(dyn, w0, EPOCHS)
    np.testing.assert_allclose(dense, expected, atol=2e-6)
    lz = jac.linearize(dyn, w0, list(EPOCHS))
    np.testing.assert_allclose(lz.thetas, expected @ np.asarray(w0), atol=2e-6)
    np.testing.assert_allclose(jac.jacobian_columns(lz, batch=3), expected, atol=2e-6)  # 7 columns: last batch padded
    assert 1 <= jac.columns_per_batch(lz) <= 7
    stack = jnp.stack([w0, 2 * w0, -w0])
    for per_batch in (None, 2):  # from free memory (all three fit), or two batches with the second padded
        np.testing.assert_allclose(jac.jacobian_seeds(dyn, stack, EPOCHS, per_batch), np.stack([expected] * 3),
                                   atol=2e-6)
    thetas = jac.jacobian_batch(dyn, stack, EPOCHS)[1]
    np.testing.assert_allclose(thetas, np.einsum("kpq,sq->skp", expected, stack), atol=2e-6)
    assert jac.seeds_that_fit(dyn, w0, EPOCHS, 3) == 3


def test_quadratic_spectrum_bulk_and_log_determinant_match_the_eigenvalues():
    with jax.enable_x64(True):  # σ spans 1e-5 .. 10: float32 would blur the smallest, and so the log-det
        dyn, w0, _ = quadratic(jnp.float64)
        spec = jax.tree.map(np.asarray, jac.analyse(*jac.singular_triplets(jac.jacobian(dyn, w0, EPOCHS))))
    for i, t in enumerate(EPOCHS):
        sigma = np.abs(M_EIGS) ** t
        order = np.argsort(-sigma, kind="stable")
        np.testing.assert_allclose(spec.singular_values[i], sigma[order], rtol=1e-10)
        # J is symmetric: u_i = sign(m_i^t) v_i
        np.testing.assert_allclose(spec.cosines[i], np.sign(M_EIGS[order]) ** t, atol=1e-10)
        expected_bulk = (np.abs(sigma - 1) < jac.SIGMA_TOL) & (np.sign(M_EIGS) ** t > jac.COS_TOL)
        assert spec.bulk_size[i] == expected_bulk.sum()
        np.testing.assert_allclose(spec.sigma_max[i], sigma.max(), rtol=1e-10)
        np.testing.assert_allclose(spec.logdet[i], t * np.log(np.abs(M_EIGS)).sum(), atol=1e-9)
    assert spec.bulk_size.tolist() == [7, 2, 2, 2]  # T = 0: J = I; later only the two kept directions


def test_top_singular_on_a_quadratic_finds_the_amplified_direction():
    dyn, w0, q = quadratic()
    u, s, v = jac.top_singular(jac.linearize(dyn, w0, (4, 9)), 2, jax.random.PRNGKey(0), oversample=3)
    for i, t in enumerate((4, 9)):
        np.testing.assert_allclose(s[i], [1.3**t, 1.0], rtol=1e-4)
        assert abs(u[i, :, 0] @ q[:, 2]) > 1 - 1e-5 and abs(v[i, :, 0] @ q[:, 2]) > 1 - 1e-5


@pytest.mark.parametrize("momentum", [0.0, 0.5])
def test_pure_weight_decay_gives_a_scaled_identity_on_weights_and_identity_on_the_bias(momentum):
    cfg = small(problem=PROBLEM, embed_dim=2, hidden_dim=3, kind="sgd", lr=0.5, weight_decay=0.1, momentum=momentum)
    params0 = make_trainer(DATA, cfg).init(jax.random.PRNGKey(0)).params

    def start(params):
        return params, make_optimizer(cfg.optimizer, cfg.hparams(), params).init(params)

    def step(state):  # the project's optimiser with a zero loss: only the L2 term acts
        params, opt_state = state
        zero = jax.tree.map(jnp.zeros_like, params)
        updates, opt_state = make_optimizer(cfg.optimizer, cfg.hparams(), params).update(zero, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    j = jac.jacobian(jac.Dynamics(start, step, lambda s: s[0]), params0, EPOCHS)
    # (θ, m) -> (θ - lr(μm + wd θ), μm + wd θ): J_T is the (θ, θ) entry of the T-th power, times I.
    lr, wd, mu = np.float32(0.5), np.float32(0.1), momentum
    step_matrix = np.array([[1 - lr * wd, -lr * mu], [wd, mu]])
    weights = np.zeros(j.shape[1], bool)
    for leaf in jac.param_layout(params0):
        weights[leaf["offset"]: leaf["offset"] + int(np.prod(leaf["shape"]))] = not leaf["name"].startswith("b_")
    assert jac.param_layout(params0)[0]["name"] == "b_unembed" and not weights[:TASK.n].any() and weights[TASK.n:].all()
    for i, t in enumerate(EPOCHS):
        scale = np.linalg.matrix_power(step_matrix, t)[0, 0]
        np.testing.assert_allclose(j[i], np.diag(np.where(weights, scale, 1.0)), atol=1e-6)


def test_adam_jacobian_columns_match_central_finite_differences_in_float64():
    cfg = small(problem=PROBLEM, embed_dim=3, hidden_dim=4, weight_decay=0.01)
    with jax.enable_x64(True):
        trainer = make_trainer(DATA, cfg)
        params0 = jax.tree.map(lambda x: x.astype(jnp.float64), trainer.init(jax.random.PRNGKey(2)).params)
        hparams = {k: jnp.float64(getattr(cfg.optimizer, k)) for k in ("lr", "weight_decay")}
        dyn = jac.trainer_dynamics(trainer, hparams)
        epochs = (3, 12)
        dense = jac.jacobian(dyn, params0, epochs)
        batched = jac.jacobian_columns(jac.linearize(dyn, params0, epochs), batch=8)
        theta0, unravel = ravel_pytree(params0)
        assert dense.dtype == batched.dtype == theta0.dtype == jnp.float64

        def trained(theta):  # θ_T at both epochs: the primal output of the (already compiled) linearization
            return jac.linearize(dyn, unravel(theta), epochs).thetas

        h = 1e-6
        for col in [leaf["offset"] + 1 for leaf in jac.param_layout(params0)]:  # one column in every leaf
            e = jnp.zeros_like(theta0).at[col].set(h)
            fd = (trained(theta0 + e) - trained(theta0 - e)) / (2 * h)
            np.testing.assert_allclose(dense[:, :, col], fd, rtol=1e-6, atol=1e-7, err_msg=f"column {col}")
        np.testing.assert_allclose(batched, dense, rtol=1e-10, atol=1e-12)
        u, s, v = map(np.asarray, jac.top_singular(jac.linearize(dyn, params0, epochs), 3, jax.random.PRNGKey(0)))

    # Matrix-free top-k on a non-symmetric J (so U and V differ, and J^T is not J): at T = 12 the top three
    # σ (4.74, 4.59, 3.16) are separated from the 13th, so each triplet must match the dense SVD's, vectors too.
    j = np.asarray(dense[1])
    u_dense, s_dense, vt_dense = np.linalg.svd(j)
    assert np.linalg.norm(j - j.T) > 1 and (np.abs(np.sum(u_dense[:, :3] * vt_dense[:3].T, 0)) < 0.99).all()
    np.testing.assert_allclose(s[1], s_dense[:3], rtol=1e-9)
    for i in range(3):
        assert abs(u[1, :, i] @ u_dense[:, i]) > 1 - 1e-6 and abs(v[1, :, i] @ vt_dense[i]) > 1 - 1e-6, i
        assert np.linalg.norm(j @ v[1, :, i] - s[1, i] * u[1, :, i]) < 1e-6 * s[1, i], i


def test_epochs_must_be_increasing():
    dyn, w0, _ = quadratic()
    for bad in ([], [3, 3], [5, 2], [-1, 2]):
        with pytest.raises(UserError, match="epoch"):
            jac.linearize(dyn, w0, bad)


def load_experiment():
    spec = importlib.util.spec_from_file_location("training_jacobian", ROOT / "experiments" / "training_jacobian.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(argv, capsys):
    return run_main(load_experiment().main, argv, capsys)


TINY = ["--groups", "Z(4)", "--task", "iid", "--fraction", "0.75", "--embed-dim", "3", "--hidden-dim", "3",
        "--epochs", "10", "40", "--n-seeds", "2", "--no-progress"]


def test_experiment_saves_spectra_of_the_sweeps_training_and_top_k_agrees_with_them(tmp_path, capsys):
    out = tmp_path / "jac"
    code, stdout, err = run([*TINY, "--out", str(out)], capsys)
    assert code == 0, err
    assert is_jacobian_results(out) and not is_jacobian_results(tmp_path)
    results = load_jacobian(out)
    dense = results["settings"]["custom"]
    n_params = results["config"]["tasks"]["custom"]["n_params"]
    assert n_params == 2 * 4 * 3 + 2 * 3 * 3 + 3 * 4 + 4
    # 58 parameters: both seeds' dense J at once (vmapped jacfwd), the width from total memory, recorded
    assert results["config"]["tasks"]["custom"]["seeds_per_batch"] == 2
    assert dense["singular_values"].shape == dense["cosines"].shape == (2, 2, n_params)
    assert dense["bulk_size"].shape == dense["logdet"].shape == dense["train_acc"].shape == (2, 2)
    np.testing.assert_allclose(dense["logdet"], np.log(dense["singular_values"]).sum(-1), rtol=1e-5)
    assert dense["epochs"].tolist() == [10, 40] and (out / "figures" / "jacobian_spectra.png").is_file()
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "custom.npz", "figures", "run.json"]

    # θ_T is what the sweep's own vmapped training gives these seeds after T epochs.
    cfg = small(problem=GroupsProblem(("Z(4)",), "iid", 0.75), embed_dim=3, hidden_dim=3, weight_decay=2e-4,
                epochs=40, log_every=40)
    trainer = make_trainer(cfg.problem.build(), cfg)
    trace = jax.jit(jax.vmap(trainer.train, in_axes=(0, None)))(seed_keys(0, [0, 1]), cfg.hparams())[1]
    for name in ("train_loss", "weight_norm"):
        np.testing.assert_allclose(dense[name][:, -1], getattr(trace, name)[:, -1], rtol=1e-5, err_msg=name)

    code, _, err = run([*TINY, "--out", str(out)], capsys)
    assert code == 2 and "already exists" in err
    # One seed at a time (linearize, column batches): the same spectra as the vmapped path.
    code, _, err = run([*TINY, "--out", str(tmp_path / "cols"), "--n-seeds", "1", "--columns-per-batch", "16"],
                       capsys)
    assert code == 0, err
    cols = load_jacobian(tmp_path / "cols")
    assert cols["config"]["tasks"]["custom"]["seeds_per_batch"] == 0
    np.testing.assert_allclose(cols["settings"]["custom"]["singular_values"], dense["singular_values"][:1],
                               rtol=1e-4, atol=1e-6)
    code, _, err = run([*TINY, "--out", str(out), "--overwrite", "--top-k", "3", "--n-seeds", "1", "--float64"], capsys)
    assert code == 0, err
    top = load_jacobian(out)["settings"]["custom"]
    assert top["singular_values"].shape == (1, 2, 3) and top["singular_values"].dtype == np.float64
    assert "logdet" not in top and "bulk_size" not in top and not jax.config.jax_enable_x64
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cols", "jac"]  # the old results moved aside, then gone
    # The matrix-free top 3 (well separated here), in float64 from the same θ0, match the dense float32 SVD.
    np.testing.assert_allclose(top["singular_values"], dense["singular_values"][:1, :, :3], rtol=1e-3)
    np.testing.assert_allclose(top["cosines"], dense["cosines"][:1, :, :3], atol=1e-3)
    assert len(draw_jacobian(out, tmp_path / "figs")) == 2


@pytest.mark.parametrize("extra, message", [
    (["--epochs", "5", "3"], "strictly increasing"),
    (["--groups", "Z(4)", "S(3)"], "order"),
    (["--top-k", "0"], "positive"),
    (["--weight-decay", "-1"], "weight decay"),
])
def test_experiment_refuses_bad_input_and_writes_nothing(tmp_path, capsys, extra, message):
    code, _, err = run([*TINY, *extra, "--out", str(tmp_path / "jac")], capsys)
    assert code == 2 and message in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_figures_module_never_imports_jax():
    code = "import sys, grokjax.figures.jacobian; assert 'jax' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
