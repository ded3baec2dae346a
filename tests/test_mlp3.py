"""MLP3 (embeddings summed, one shared layer): init statistics against the authors' PyTorch bounds, the forward
pass against numpy, two Adam steps against a numpy backward pass and PyTorch's Adam, and the sweep and CLI paths.
"""

import functools
import importlib.util
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from cli_runner import run_main
from configs import S3_VS_A3Z2, small
from grokjax.models import MLP3Spec, weight_norm, weights_only
from grokjax.models.mlp3 import MLP3
from grokjax.problems import GroupsProblem
from grokjax.run.storage import load_params, read_arrays
from grokjax.run.sweep import run_sweep
from grokjax.train import make_trainer

N, D, H = 24, 32, 16  # bounds 1/sqrt(D) = 0.177 (w_hidden) and 1/sqrt(H) = 0.25 (unembedding) are distinct
NAMES = {"embed_left", "embed_right", "w_hidden", "w_unembed", "b_unembed"}
PROBLEM = GroupsProblem(S3_VS_A3Z2)
TASK, DATA = PROBLEM.task_of(), PROBLEM.build()
EXPERIMENT = Path(__file__).resolve().parents[1] / "experiments" / "sweep_intersection.py"


def numpy_logits(p, a, b):
    return np.maximum((p["embed_left"][a] + p["embed_right"][b]) @ p["w_hidden"], 0) @ p["w_unembed"] + p["b_unembed"]


@functools.cache
def init_many(n_models, bias=True):
    x = jnp.zeros(1, jnp.int32)
    keys = jax.random.split(jax.random.PRNGKey(1), n_models)
    return jax.jit(jax.vmap(lambda k: MLP3(N, D, H, bias).init(k, x, x)["params"]))(keys)


def test_init_statistics_match_the_authors_pytorch_modules():
    p = init_many(200)
    assert set(p) == NAMES
    for name in ("embed_left", "embed_right"):  # nn.Embedding: N(0, 1)
        assert p[name].shape == (200, N, D)
        assert abs(float(p[name].mean())) < 0.012 and abs(float(p[name].std()) - 1) < 0.01
    for name, shape, bound in (("w_hidden", (D, H), 1 / np.sqrt(D)), ("w_unembed", (H, N), 1 / np.sqrt(H)),
                               ("b_unembed", (N,), 1 / np.sqrt(H))):  # nn.Linear: U(±1/sqrt(fan_in))
        w = np.asarray(p[name])
        assert w.shape == (200, *shape)
        assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
        assert abs(w.var() / (bound**2 / 3) - 1) < 0.05, name  # 4800 samples of b_unembed: 4 standard errors
    assert not np.allclose(p["embed_left"][0], p["embed_right"][0])
    assert "b_unembed" not in init_many(1, bias=False)


def test_forward_matches_numpy_and_bias_is_not_a_weight():
    p = jax.tree.map(lambda a: np.asarray(a[0], np.float64), init_many(200))
    a, b = np.array([0, 3, 23, 5, 7]), np.array([1, 3, 0, 22, 7])
    got = MLP3(N, D, H).apply({"params": p}, a, b)
    np.testing.assert_allclose(np.asarray(got), numpy_logits(p, a, b), rtol=1e-5, atol=1e-5)
    assert weights_only(p) == {k: k != "b_unembed" for k in p}
    norm = np.sqrt(sum(np.sum(v**2) for k, v in p.items() if k != "b_unembed"))
    assert np.isclose(float(weight_norm(p)), norm, rtol=1e-6)


def numpy_grads(p, pairs, labels):
    """Mean cross-entropy gradient of MLP3 by hand, in float64; W gets the gradient of both embeddings' sum."""
    a, b = pairs // DATA.vocab, pairs % DATA.vocab
    x = p["embed_left"][a] + p["embed_right"][b]
    pre = x @ p["w_hidden"]
    hidden = np.maximum(pre, 0)
    logits = hidden @ p["w_unembed"] + p["b_unembed"]
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    dlogits = (probs - np.eye(DATA.n_classes)[labels]) / len(labels)
    dpre = (dlogits @ p["w_unembed"].T) * (pre > 0)
    dx = dpre @ p["w_hidden"].T
    d_el, d_er = np.zeros_like(p["embed_left"]), np.zeros_like(p["embed_right"])
    np.add.at(d_el, a, dx)
    np.add.at(d_er, b, dx)
    return {"embed_left": d_el, "embed_right": d_er, "w_hidden": x.T @ dpre,
            "w_unembed": hidden.T @ dlogits, "b_unembed": dlogits.sum(0)}


def test_two_adam_steps_match_pytorch_adam_with_l2_on_weights():
    cfg = small(model=MLP3Spec(8, 8), epochs=2, log_every=1, weight_decay=0.05)
    trainer = make_trainer(DATA, cfg)
    state = jax.jit(trainer.init)(jax.random.PRNGKey(3))
    p = jax.tree.map(lambda x: np.asarray(x, np.float64), state.params)
    assert set(p) == NAMES and p["w_hidden"].shape == (8, 8)
    advance = jax.jit(trainer.advance, static_argnums=2)
    o, m, v = cfg.optimizer, {k: 0.0 for k in p}, {k: 0.0 for k in p}
    for t in (1, 2):
        state, _ = advance(state, cfg.hparams(), 1)
        g = numpy_grads(p, TASK.train_pairs, TASK.train_labels)
        for k in p:
            if k != "b_unembed":
                g[k] = g[k] + o.weight_decay * p[k]  # PyTorch's weight_decay: L2 on the gradient, weights only
            m[k] = o.beta1 * m[k] + (1 - o.beta1) * g[k]
            v[k] = o.beta2 * v[k] + (1 - o.beta2) * g[k] ** 2
            p[k] = p[k] - o.lr * (m[k] / (1 - o.beta1**t)) / (np.sqrt(v[k] / (1 - o.beta2**t)) + o.eps)
        for k in p:
            np.testing.assert_allclose(state.params[k], p[k], rtol=2e-5, atol=2e-6, err_msg=f"step {t}, {k}")


def test_sweep_trains_and_saves_mlp3_parameters(tmp_path):
    cfg = small(model=MLP3Spec(8, 8), epochs=10, log_every=5, n_seeds=2, seeds_per_call=2)
    run_sweep(cfg, tmp_path / "s", workers=1, progress=False, log=lambda *_: None, cache_dir=None)
    saved = json.loads((tmp_path / "s" / "config.json").read_text())
    assert saved["schema"] == 2 and saved["sweep"]["model"] == {"kind": "mlp3", "embed_dim": 8, "hidden_dim": 8,
                                                                 "unembed_bias": True}
    params = load_params(tmp_path / "s" / "params")
    assert {k: v.shape for k, v in params.items()} == {
        "embed_left": (2, 6, 8), "embed_right": (2, 6, 8), "w_hidden": (2, 8, 8), "w_unembed": (2, 8, 6),
        "b_unembed": (2, 6)}
    seeds = read_arrays(tmp_path / "s" / "seeds.npz")
    for r in range(2):  # the saved final loss is the numpy loss of the saved parameters
        p = {k: np.asarray(v[r], np.float64) for k, v in params.items()}
        a, b = np.divmod(TASK.train_pairs, DATA.vocab)
        logits = numpy_logits(p, a, b)
        loss = np.mean(np.log(np.exp(logits).sum(1)) - logits[np.arange(len(a)), TASK.train_labels])
        np.testing.assert_allclose(seeds["final_train_loss"][r], loss, rtol=1e-5)
    assert not np.allclose(params["w_hidden"][0], params["w_hidden"][1])


def test_cli_model_mlp3_uses_the_authors_hidden_size_64(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("sweep_intersection", EXPERIMENT)
    experiment = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(experiment)
    out = tmp_path / "cli"
    argv = ["--model", "mlp3", "--embed-dim", "8", "--groups", *S3_VS_A3Z2, "--epochs", "2", "--log-every", "1",
            "--n-seeds", "1", "--seeds-per-call", "1", "--workers", "1", "--no-compile-cache", "--no-progress",
            "--out", str(out)]
    code, _, err = run_main(experiment.main, argv, capsys)
    assert code == 0, err
    model = json.loads((out / "config.json").read_text())["sweep"]["model"]
    assert model == {"kind": "mlp3", "embed_dim": 8, "hidden_dim": 64, "unembed_bias": True}
    assert load_params(out / "params")["w_hidden"].shape == (1, 8, 64)


def test_a_short_s4_vs_a4z2_sweep_of_mlp3_runs_end_to_end(tmp_path):
    """The published pair (336 of 576 pairs agree) with MLP3: every file written, losses falling from epoch 0."""
    from grokjax.problems import GroupsProblem

    cfg = small(problem=GroupsProblem(), model=MLP3Spec(8, 16), epochs=40, log_every=20, n_seeds=4, seeds_per_call=4)
    run_sweep(cfg, tmp_path / "s4", workers=1, progress=False, log=lambda *_: None, cache_dir=None)
    outcome = json.loads((tmp_path / "s4" / "outcome.json").read_text())
    assert outcome["groups"] == ["S(4)", "times(A(4),Z(2))"] and sum(r["count"] for r in outcome["outcomes"]) == 4
    params = load_params(tmp_path / "s4" / "params")
    assert params["w_hidden"].shape == (4, 8, 16) and params["w_unembed"].shape == (4, 16, 24)
    traces = read_arrays(tmp_path / "s4" / "traces.npz")
    assert traces["train_loss"].shape == (4, 3) and np.all(traces["train_loss"][:, -1] < traces["train_loss"][:, 0])
    assert json.loads((tmp_path / "s4" / "config.json").read_text())["task"]["n_train"] == 336
