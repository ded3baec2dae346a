"""Total variation of the function over training: closed forms on hand-made logits (a constant function, one that
flips every argmax), each point set and the KL's direction against numpy, the window, and the experiment on a small
sweep against its own traces and a numpy forward pass of its checkpoints."""

import json
import shutil
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from cli_runner import run_main
from configs import S3_VS_A3Z2, small
from grokjax.analysis.variation import (MEASURES, POINT_SETS, function_variation, loss_labels, point_masks,
                                        window_intervals, window_totals)
from grokjax.errors import UserError
from grokjax.figures.common import save_figure
from grokjax.figures.variation import draw_variation
from grokjax.problems import GroupsProblem
from grokjax.run.results import load_sweep
from grokjax.run.storage import load_params, read_arrays
from grokjax.run.sweep import run_sweep

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
from variation import main  # noqa: E402

DATA = GroupsProblem(S3_VS_A3Z2).build()  # 36 points, 24 of them for training, 6 classes
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def masks() -> dict:
    """Each point set as booleans over the table, from the training indices alone."""
    train = np.isin(np.arange(DATA.n_points), DATA.train_idx)
    return {"train": train, "table": np.ones_like(train), "test": ~train}


def variation_of(logits: np.ndarray) -> dict:
    """`function_variation` of a run whose checkpoints are the given logits (checkpoints, points, classes)."""
    out = function_variation(lambda x: x, jnp.asarray(logits, jnp.float32), jnp.asarray(point_masks(DATA)),
                             jnp.asarray(loss_labels(DATA)))
    return {k: np.asarray(v) for k, v in out.items()}


def test_a_constant_function_has_zero_total_variation():
    logits = np.random.default_rng(0).normal(size=(DATA.n_points, DATA.n_classes)) * 5
    out = variation_of(np.stack([logits] * 4))
    assert sorted(out) == sorted(f"{m}_{s}" for m in MEASURES for s in POINT_SETS)
    for name, values in out.items():
        assert values.shape == ((3, 2) if name in ("loss_table", "loss_test") else (3,)), name
        assert np.all(values == 0), name


def test_a_function_that_flips_every_argmax_every_interval_has_tv_one_per_interval():
    """Logits a * onehot(c) and a * onehot(c') alternate (c' != c, both depending on the point): every argmax flips,
    the L2 change is a sqrt 2, the KL is a (e^a - 1) / (e^a + n - 1), and the cross-entropy at a point is
    log(e^a + n - 1) - a [label = argmax]."""
    a, n = 3.0, DATA.n_classes
    first = np.arange(DATA.n_points) % n
    second = (first + 1 + np.arange(DATA.n_points) % (n - 1)) % n
    argmax = np.stack([first, second, first, second, first])
    out = variation_of(a * np.eye(n)[argmax])
    kl = a * (np.exp(a) - 1) / (np.exp(a) + n - 1)
    for s in POINT_SETS:
        np.testing.assert_array_equal(out[f"flip_{s}"], 1.0)
        np.testing.assert_allclose(out[f"l2_{s}"], a * np.sqrt(2), rtol=1e-6)
        np.testing.assert_allclose(out[f"kl_{s}"], kl, rtol=1e-5)
    sets, labels = masks(), np.zeros(DATA.n_points, int)
    labels[DATA.train_idx] = DATA.train_labels
    ce = lambda y, on: np.mean(np.log(np.exp(a) + n - 1) - a * (y[None, on] == argmax[:, on]), axis=1)
    np.testing.assert_allclose(out["loss_train"], np.abs(np.diff(ce(labels, sets["train"]))), rtol=1e-5, atol=1e-6)
    for s in ("table", "test"):
        for g, y in enumerate(DATA.eval_labels):
            np.testing.assert_allclose(out[f"loss_{s}"][:, g], np.abs(np.diff(ce(y, sets[s]))), rtol=1e-5, atol=1e-6)
    totals = window_totals({k: v[None] for k, v in out.items()}, np.array([False, True, True, True]))
    np.testing.assert_array_equal(totals["flip_test_sum"], [3.0])  # one per interval in the window
    np.testing.assert_array_equal(totals["flip_test_mean"], [1.0])


def test_each_point_set_is_its_own_mean_and_the_kl_takes_the_earlier_function_as_reference():
    """Only the test points move: train sees nothing, test and table the numpy means; KL(p_t || p_{t+1}) in float64
    differs from the reverse direction by far more than the tolerance."""
    rng = np.random.default_rng(1)
    before = rng.normal(size=(DATA.n_points, DATA.n_classes)) * 2
    after = before + rng.normal(size=before.shape) * 2 * masks()["test"][:, None]
    out = variation_of(np.stack([before, after]))
    log_softmax = lambda z: z - np.log(np.exp(z).sum(-1, keepdims=True))
    p, q = log_softmax(before), log_softmax(after)
    per_point = {"l2": np.linalg.norm(after - before, axis=-1), "kl": np.sum(np.exp(p) * (p - q), -1),
                 "flip": (before.argmax(-1) != after.argmax(-1)).astype(float)}
    reverse = np.sum(np.exp(q) * (q - p), -1)
    for m, values in per_point.items():
        assert out[f"{m}_train"][0] == 0
        for s in ("table", "test"):
            np.testing.assert_allclose(out[f"{m}_{s}"][0], values[masks()[s]].mean(), rtol=1e-5)
    assert abs(reverse[masks()["test"]].mean() / per_point["kl"][masks()["test"]].mean() - 1) > 0.05
    assert 0 < out["flip_test"][0] < 1


def test_the_window_holds_the_intervals_wholly_inside_it():
    assert window_intervals([0, 10, 20, 30], 30).tolist() == [False, False, True]
    assert window_intervals([0, 10, 20, 30], 30, (0, 1)).all()
    full = window_intervals(np.arange(0, 3001, 10), 3000)  # 2/3 of 3000 is 1999.99... in floating point
    assert full.sum() == 100 and np.flatnonzero(full)[0] == 200
    assert window_intervals([0, 100, 200, 300, 400], 400, (0.3, 0.8)).tolist() == [False, False, True, False]
    with pytest.raises(UserError, match="No interval"):
        window_intervals([0, 10, 20, 30], 30, (0.5, 0.9))
    for bad in ((0.5, 0.5), (-0.1, 1), (0.2, 1.5)):
        with pytest.raises(UserError, match="fractions of training"):
            window_intervals([0, 10, 20, 30], 30, bad)
    values = np.arange(24.0).reshape(2, 3, 4)
    totals = window_totals({"x": values}, np.array([True, False, True]))
    np.testing.assert_array_equal(totals["x_sum"], values[:, 0] + values[:, 2])
    np.testing.assert_array_equal(totals["x_mean"], (values[:, 0] + values[:, 2]) / 2)


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory) -> Path:
    """A finished 5-run sweep on S(3) vs A(3) x Z(2) with checkpoints at epochs 0, 10, 20, 30 (4 runs per call)."""
    root = tmp_path_factory.mktemp("variation") / "sweep"
    run_sweep(small(n_seeds=5, seeds_per_call=4, keep_every=10, lr=3e-2), root, workers=1, progress=False,
              log=lambda *_: None, cache_dir=None)
    return root


def mlp2_logits(params: dict) -> np.ndarray:
    """MLP2 in float64 numpy on every point: relu(E_l[a] W_l + E_r[b] W_r) W_u + b_u, parameters (..., leaf shape)."""
    p = {k: v.astype(np.float64) for k, v in params.items()}
    a, b = DATA.inputs[:, 0], DATA.inputs[:, 1]
    hidden = np.maximum(p["embed_left"][..., a, :] @ p["w_left"] + p["embed_right"][..., b, :] @ p["w_right"], 0)
    return hidden @ p["w_unembed"] + p["b_unembed"][..., None, :]


def test_experiment_matches_the_traces_and_a_numpy_forward_pass(sweep_dir, capsys):
    code, out, err = run_main(main, [str(sweep_dir), "--window", "0", "1", "--no-progress", "--workers", "1"], capsys)
    assert code == 0, err
    saved = read_arrays(sweep_dir / "variation.npz")
    traces = read_arrays(sweep_dir / "traces.npz")
    at = np.searchsorted(traces["epochs"], saved["epochs"])
    assert saved["epochs"].tolist() == [0, 10, 20, 30] and saved["in_window"].all()
    assert saved["run"].tolist() == list(range(5))
    # The loss changes against the sweep's own traces, computed by the trainer's metrics.
    np.testing.assert_allclose(saved["loss_train"], np.abs(np.diff(traces["train_loss"][:, at], axis=1)), atol=2e-6)
    np.testing.assert_allclose(saved["loss_table"], np.abs(np.diff(traces["group_loss"][:, at], axis=1)), atol=2e-6)
    # The logit changes against a float64 numpy forward pass of the saved checkpoints.
    logits = mlp2_logits(load_params(sweep_dir / "checkpoints"))  # (runs, checkpoints, points, classes)
    before, after = logits[:, :-1], logits[:, 1:]
    l2 = np.linalg.norm(after - before, axis=-1)
    flip = before.argmax(-1) != after.argmax(-1)
    for s, on in masks().items():
        np.testing.assert_allclose(saved[f"l2_{s}"], l2[..., on].mean(-1), rtol=1e-4)
        np.testing.assert_allclose(saved[f"flip_{s}"], flip[..., on].mean(-1))
        np.testing.assert_allclose(saved[f"l2_{s}_sum"], l2[..., on].mean(-1).sum(-1), rtol=1e-4)
    assert saved["loss_test"].shape == saved["loss_table"].shape == (5, 3, 2)
    assert saved["loss_test_mean"].shape == (5, 2) and saved["kl_test_sum"].shape == (5,)
    assert np.all(saved["kl_table"] > 0)
    info = json.loads((sweep_dir / "variation.json").read_text())
    assert info["settings"]["window"] == [0.0, 1.0] and info["settings"]["window_epochs"] == [0, 30]
    assert info["point_counts"] == {"train": 24, "table": 36, "test": 12} and info["groups"] == list(S3_VS_A3Z2)
    assert "l2 train" in out and "loss test S(3)" in out and "wrote" in out

    # The default window, the last third: the sums are those of the last interval alone.
    code, out, err = run_main(main, [str(sweep_dir), "--overwrite", "--no-progress", "--workers", "1"], capsys)
    assert code == 0, err
    last = read_arrays(sweep_dir / "variation.npz")
    assert last["in_window"].tolist() == [False, False, True]
    np.testing.assert_array_equal(last["l2_train"], saved["l2_train"])
    np.testing.assert_array_equal(last["loss_test_sum"], saved["loss_test"][:, -1])
    np.testing.assert_array_equal(last["flip_test_mean"], saved["flip_test"][:, -1])

    names = []
    draw_variation(load_sweep(sweep_dir), lambda name, fig: names.append(name) or save_figure(fig, sweep_dir / name))
    assert names == ["variation_by_outcome", "loss_variation_by_outcome"]
    assert all((sweep_dir / n).read_bytes().startswith(PNG_MAGIC) for n in names)


def test_experiment_refuses_bad_input_and_keeps_saved_results(sweep_dir, tmp_path, capsys):
    root = tmp_path / "copy"
    shutil.copytree(sweep_dir, root)
    (root / "variation.npz").write_bytes(b"kept")
    code, out, err = run_main(main, [str(root), "--workers", "1"], capsys)
    assert code == 2 and "already exist" in err and "--overwrite" in err
    assert (root / "variation.npz").read_bytes() == b"kept"
    for args, message in ((["--window", "0.9", "0.2"], "fractions of training"), (["--first", "0"], "--first"),
                          (["--window", "0.2", "0.5"], "No interval")):
        code, out, err = run_main(main, [str(root), "--overwrite", *args], capsys)
        assert code == 2 and message in err and err.count("\n") == 1, err
    (root / "checkpoints").rename(root / "elsewhere")
    code, out, err = run_main(main, [str(root), "--overwrite"], capsys)
    assert code == 2 and "--keep-every" in err
    assert (root / "variation.npz").read_bytes() == b"kept"
