"""The linear teacher: gradient descent's training loss meets the closed form as the learning rate goes to zero
(first order in the learning rate); the closed-form student against a float64 matrix exponential (scipy), with and
without label noise, on both sides of lambda = 1; the eigenvalue losses against the student's; the never-learned
directions of d_in > N; run independence; and the experiment's files, refusals and figures."""

import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.linalg import expm

from cli_runner import run_main
from grokjax.analysis.linear_teacher import (LinearTeacher, closed_form_run, closed_form_student, covariances,
                                             eigen_losses, example_losses, sample, simulated_run)
from grokjax.errors import UserError
from grokjax.figures.linear_teacher import draw_linear_teacher
from grokjax.figures.sharpness import collection_paths
from grokjax.run.linear_teacher import grid, run_inputs
from grokjax.run.storage import read_arrays

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
import linear_teacher  # noqa: E402

N_MAX = 24
KEY = jax.random.PRNGKey(3)


def task(**fields):
    return LinearTeacher(**{"d_in": 20, "d_out": 2, "n_test": 50, "epsilon": 0.05, **fields})


def mask(n):
    return (np.arange(N_MAX) < n).astype(np.float32)


def test_gradient_descent_meets_the_closed_form_as_the_learning_rate_goes_to_zero():
    """Training loss at the same times t = lr x steps (t up to 4), at lambda = 1.25 (d_in > N) and 0.83: within 1% of
    the closed form at lr 1e-3, and the largest relative gap shrinks about 4-fold from lr 4e-3 to 1e-3 (first
    order)."""
    n_train = jnp.array([16, 24])
    gaps = []
    for lr in (4e-3, 1e-3):
        t = task(lr=lr, steps=int(round(4 / lr)), n_logs=20)
        run = jax.jit(jax.vmap(lambda n: (closed_form_run(KEY, n, t, N_MAX), simulated_run(KEY, n, t, N_MAX))))
        (closed, (eigen_train, _)), simulated = jax.tree.map(np.asarray, run(n_train))
        np.testing.assert_allclose(eigen_train, closed[0], rtol=2e-4)  # the two closed forms agree
        gaps.append(np.max(np.abs(simulated[0] - closed[0]) / closed[0], axis=1))
    assert np.all(gaps[1] < 0.01)
    assert np.all((3 < gaps[0] / gaps[1]) & (gaps[0] / gaps[1] < 5))


@pytest.mark.parametrize("n_train, noise", [(16, 0.0), (16, 0.3), (24, 0.3)])
def test_the_closed_form_student_is_the_matrix_exponential_solution(n_train, noise):
    """S' = -c (S Sigma - C) solved as [S, I](t) = [S, I](0) expm(M t), M = [[-c Sigma, 0], [c C, 0]], in float64
    (scipy); the student starts away from zero."""
    t = task(noise=noise, init_scale=1.0)
    draw = jax.tree.map(np.asarray, jax.jit(lambda k: sample(k, t, N_MAX))(KEY))
    sigma, c_mat = (np.asarray(a, np.float64) for a in covariances(draw, mask(n_train)))
    times = np.array([0.0, 0.3, 3.0, 30.0])
    student = jax.jit(lambda d, m, ts: closed_form_student(d, m, t, ts))
    got = np.asarray(student(draw, jnp.asarray(mask(n_train)), jnp.asarray(times, jnp.float32)))
    c, d, o = 2 / t.d_out, t.d_in, t.d_out
    m = np.zeros((d + o, d + o))
    m[:d, :d], m[d:, :d] = -c * sigma, c * c_mat
    start = np.concatenate([draw["s0"].astype(np.float64), np.eye(o)], axis=1)
    for k, time in enumerate(times):
        expected = (start @ expm(m * time))[:, :d]
        np.testing.assert_allclose(got[k], expected, atol=2e-4 * (1 + time), rtol=1e-3)


def test_eigen_losses_are_the_students_losses_and_unlearnable_directions_stay():
    """Noiseless: the eigenvalue training loss is the mean loss of the closed-form student on the training examples;
    with d_in > N the student never moves along the d_in - N directions no training input spans, so the population
    test loss ends at ||(S_0 - T) P||^2 / d_out, P the projector on them (numpy), even after a long time."""
    t = task(init_scale=0.5)
    draw = jax.tree.map(np.asarray, jax.jit(lambda k: sample(k, t, N_MAX))(KEY))
    times = jnp.asarray([0.0, 1.0, 10.0, 1e6])
    both = jax.jit(lambda d, m: (closed_form_student(d, m, t, times), eigen_losses(d, m, t, times)))
    students, (train, test) = jax.tree.map(np.asarray, both(draw, jnp.asarray(mask(16))))
    direct = [np.mean(np.asarray(example_losses(s, draw["x"][:16], draw["y"][:16]))) for s in students]
    np.testing.assert_allclose(train[:3], direct[:3], rtol=1e-3)
    x = draw["x"][:16].astype(np.float64)
    null = np.eye(20) - np.linalg.pinv(x) @ x
    d0 = (draw["s0"] - draw["teacher"]).astype(np.float64)
    np.testing.assert_allclose(test[-1], np.sum((d0 @ null) ** 2) / t.d_out, rtol=1e-4)
    assert train[-1] == 0


def test_a_runs_numbers_do_not_depend_on_the_other_runs():
    """Run r is seed r % n_seeds at lambda r // n_seeds with key fold_in(PRNGKey(seed), r % n_seeds): the same
    (seed, lambda) gets the same key and numbers with 2 or 3 seeds."""
    t = task(steps=50, n_logs=6)
    keys2, n2 = run_inputs(0, 2, np.array([16, 24]))
    keys3, n3 = run_inputs(0, 3, np.array([16, 24]))
    assert n2.tolist() == [16, 16, 24, 24] and n3.tolist() == [16, 16, 16, 24, 24, 24]
    np.testing.assert_array_equal(keys2[3], keys3[4])  # seed 1 at lambda index 1
    one = jax.jit(jax.vmap(lambda k, n: closed_form_run(k, n, t, N_MAX)[0]))
    other = [4, 0, 1, 2]  # the same run among other neighbours, at another position
    a, b = one(keys2, n2), one(keys3[other], n3[other])
    for x, y in zip(a, b):
        np.testing.assert_allclose(np.asarray(x)[3], np.asarray(y)[0], rtol=1e-5, atol=1e-7)


def test_the_grid_realises_lambda_and_refuses_what_cannot_be():
    t = task(d_in=300)
    lam, n = grid(t, [1.003, 1.1], "d_over_n")
    assert n.tolist() == [299, 273] and np.allclose(lam, [300 / 299, 300 / 273])
    lam, n = grid(t, [1.003, 1.1], "n_over_d")
    assert n.tolist() == [301, 330] and np.allclose(lam, [300 / 301, 300 / 330])
    with pytest.raises(UserError, match="same number of training examples"):
        grid(task(d_in=20), [1.001, 1.002], "d_over_n")
    with pytest.raises(UserError, match="too large"):
        task(lr=0.5).check_stable([1.0])


SMALL = ["--d-in", "12", "--d-out", "2", "--n-test", "40", "--lambdas", "0.8", "0.9", "--seeds", "2", "--steps", "400",
         "--n-logs", "40", "--lr", "0.2", "--epsilon", "0.05", "--no-progress"]


def test_the_experiment_saves_curves_fits_and_collections_together(tmp_path, capsys):
    out = tmp_path / "linear"
    code, printed, err = run_main(linear_teacher.main, ["--out", str(out), *SMALL, "--no-figures"], capsys)
    assert code == 0, err
    arrays = read_arrays(out / "linear_teacher.npz")
    assert arrays["closed_train_acc"].shape == (4, len(arrays["steps"])) and arrays["lambda"].tolist() == [
        12 / 15, 12 / 15, 12 / 13, 12 / 13]
    fits = read_arrays(out / "fits.npz")
    assert list(fits["curves"]) == ["closed/train", "closed/test", "simulated/train", "simulated/test"]
    assert list(fits["pairs"]) == ["closed", "simulated"] and np.all(fits["chance"] == 0)
    coll = read_arrays(out / "sharpness_simulated.npz")
    np.testing.assert_array_equal(coll["relative_gap"], fits["relative_gap"][:, 1])
    info = json.loads((out / "linear_teacher.json").read_text())
    assert info["agreement"]["max_abs_diff_test_acc"] <= 0.1
    assert "log-log slope of R_rel against m" in printed
    figures = draw_linear_teacher(out, tmp_path)  # the gap-sharpness figures are tested with concealed parity's
    assert [p.name for p in figures] == ["linear_teacher_curves.png"] and figures[0].read_bytes()[:4] == b"\x89PNG"
    assert collection_paths(out) == [out / "sharpness_closed.npz", out / "sharpness_simulated.npz"]
    before = (out / "fits.npz").read_bytes()
    code, _, err = run_main(linear_teacher.main, ["--out", str(out), *SMALL], capsys)
    assert code == 2 and "--overwrite" in err and (out / "fits.npz").read_bytes() == before
    code, _, err = run_main(linear_teacher.main, ["--out", str(tmp_path / "bad"), *SMALL, "--lr", "5"], capsys)
    assert code == 2 and "too large" in err and not (tmp_path / "bad").exists()
