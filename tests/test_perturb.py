"""Perturbation sensitivity: the noise laws, zero noise retracing the run bit for bit, copies independent of the
other copies, and the experiment's files and refusals."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import small
from cli_runner import run_main
from grokjax.analysis.perturb import PUBLISHED_SCALES, copy_keys, noise
from grokjax.errors import UserError
from grokjax.run.perturb import PerturbJob, perturb_job, perturb_sweep
from grokjax.run.sweep import run_sweep
from grokjax.train import make_trainer

CFG = small(epochs=40, log_every=5, keep_every=10, n_seeds=4, seeds_per_call=4)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("perturb") / "sweep"
    run_sweep(CFG, root, progress=False, workers=1, log=lambda *a: None, cache_dir=None)
    return root


def test_sphere_noise_has_norm_scale_per_tensor_and_normal_noise_the_scale_as_deviation():
    params = {"a": jnp.zeros((300, 40)), "b": jnp.zeros(7)}
    key = jax.random.PRNGKey(1)
    sphere = noise("sphere", params, key, 0.3)
    assert [float(jnp.linalg.norm(x)) for x in jax.tree.leaves(sphere)] == pytest.approx([0.3, 0.3], rel=1e-6)
    normal = noise("normal", params, key, 0.3)
    assert float(jnp.std(normal["a"])) == pytest.approx(0.3, rel=0.03)  # 12,000 draws: 0.7% standard error
    assert float(jnp.mean(normal["a"])) == pytest.approx(0.0, abs=0.01)
    # the sphere's direction is the normal draw's, normalised: the same key, the same direction at every scale
    np.testing.assert_allclose(sphere["a"], 0.3 * normal["a"] / jnp.linalg.norm(normal["a"]), rtol=1e-5, atol=1e-9)
    assert not np.array_equal(normal["a"].ravel()[:7], normal["b"])  # tensors draw apart
    trainer = make_trainer(CFG.problem.build(), CFG)
    init = lambda k: trainer.init(k).params
    scaled = noise("init", init(key), key, 0.5, init)
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(x, 0.5 * y), scaled, init(key))
    with pytest.raises(UserError, match="Unknown noise"):
        noise("uniform", params, key, 1.0)


def test_published_scales_and_copy_keys():
    assert PUBLISHED_SCALES[0] == 0 and len(PUBLISHED_SCALES) == 17
    assert PUBLISHED_SCALES[1] == 2.0**-25 and PUBLISHED_SCALES[-1] == 2.0**5
    keys = copy_keys(3, [5, 2], 100, 4)
    expected = jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(
        jax.random.PRNGKey(3), 2), 100), 0x9E7), 3)
    np.testing.assert_array_equal(keys[1, 3], expected)
    np.testing.assert_array_equal(copy_keys(3, [2], 100, 2)[0], keys[1, :2])


def test_zero_noise_with_the_optimizer_carried_retraces_the_run_bit_for_bit(sweep):
    job = PerturbJob(runs=(0, 2), epochs=(10, 30), scales=(0.0,), copies=2, carry_optimizer=True, name="zero")
    out = perturb_sweep(sweep, job, workers=1, progress=False, cache_dir=None)
    traces, seeds = np.load(sweep / "traces.npz"), np.load(sweep / "seeds.npz")
    for name in ("train_loss", "train_acc", "weight_norm", "margin"):
        expected = traces[name][[0, 2], -1]
        assert np.array_equal(out[name][:, :, 0, :], np.broadcast_to(expected[:, None, None], (2, 2, 2))), name
    assert np.array_equal(out["group_acc"][:, 1, 0, 0], traces["group_acc"][[0, 2], -1])
    assert np.all(out["distance"] == 0) and not out["diverged"].any()
    assert np.array_equal(out["grokked"][:, 0, 0, 0], seeds["grokked"][[0, 2]])
    assert out["train_loss"].shape == (2, 2, 1, 2) and out["group_acc"].shape == (2, 2, 1, 2, 2)


def test_a_copy_does_not_depend_on_the_other_copies_runs_or_workers(sweep):
    big = PerturbJob(runs=(0, 1, 3), epochs=(20,), scales=(0.05, 2.0), copies=3, name="big")
    small_job = PerturbJob(runs=(3,), epochs=(20,), scales=(2.0,), copies=2, name="small")
    a = perturb_sweep(sweep, big, workers=1, progress=False, cache_dir=None)
    b = perturb_sweep(sweep, small_job, workers=2, progress=False, cache_dir=None)
    for name in ("train_loss", "group_acc", "distance", "margin"):
        assert np.array_equal(a[name][2, :, 1, :2], b[name][0, :, 0]), name
    assert (a["distance"][:, 0, 1] > 0).any()  # the noise does something at scale 2
    fresh = perturb_sweep(sweep, PerturbJob(runs=(3,), epochs=(20,), scales=(2.0,), copies=2, carry_optimizer=True,
                                            name="carried"), workers=1, progress=False, cache_dir=None)
    assert not np.array_equal(fresh["train_loss"], b["train_loss"])  # the optimizer state matters


def test_experiment_runs_the_presets_and_refuses_bad_input(sweep, capsys, tmp_path):
    from experiments.perturb import main

    code, out, err = run_main(main, [str(sweep), "--epoch-sweep", "--every", "20", "--copies", "1", "--runs", "1",
                                     "--workers", "1", "--no-progress", "--no-compile-cache"], capsys)
    assert code == 0, err
    saved = np.load(sweep / "perturb_epochs.npz")
    assert list(saved["epochs"]) == [0, 20] and list(saved["scales"]) == [0.01]
    assert "same fate" in out
    from grokjax.figures import draw

    paths, _ = draw(sweep)
    assert sweep / "figures" / "perturb_epochs.png" in paths and (sweep / "figures" / "perturb_epochs.png").stat().st_size
    job = perturb_job(sweep, scale_sweep=True, epochs=[10])
    assert job.scales == tuple(PUBLISHED_SCALES) and job.copies == 20 and job.runs == (0, 1, 2, 3)
    for argv, message in (([str(sweep), "--epochs", "15"], "no checkpoint at epoch 15"),
                          ([str(sweep), "--scale-sweep"], "--epochs"),
                          ([str(sweep), "--epochs", "10", "--runs", "9"], "rows of seeds.npz"),
                          ([str(sweep), "--epochs", "10", "--scales", "-1"], "non-negative"),
                          ([str(sweep), "--epoch-sweep", "--every", "20", "--copies", "1"], "already exist"),
                          ([str(tmp_path)], "No sweep results")):
        code, _, err = run_main(main, argv + ["--workers", "1", "--no-progress", "--no-compile-cache"], capsys)
        assert code == 2 and message in err and "Traceback" not in err, (argv, err)
