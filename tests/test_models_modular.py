"""The modular-arithmetic model families: the one-hot MLP of Prieto et al. (2025) and the small transformer of
Power et al. / Nanda et al.: parameter shapes against a hand count, init statistics against the reference's
PyTorch modules, the forward pass against numpy, and a short sweep on x + y mod 7 whose loss falls.
"""

import json

import jax
import numpy as np
import pytest

from configs import small
from grokjax.models import MODELS, OneHotMLPSpec, n_params, weights_only
from grokjax.models.onehot_mlp import OneHotMLP
from grokjax.problems import ModularProblem
from grokjax.run.specs import read_config
from grokjax.run.storage import read_arrays
from grokjax.run.sweep import run_sweep

P = 7
PROBLEM = ModularProblem(p=P, op="+", fraction=0.5)
DATA = PROBLEM.build()


def test_onehot_mlp_shapes_match_a_hand_count():
    model = OneHotMLPSpec(hidden_dim=16, depth=3).build(DATA)
    params = jax.eval_shape(model.init, jax.random.PRNGKey(0))
    assert {k: v.shape for k, v in params.items()} == {
        "w_in": (2 * P, 16), "w_hidden_1": (16, 16), "w_hidden_2": (16, 16), "w_out": (16, P)}
    assert n_params(model) == 2 * P * 16 + 2 * 16 * 16 + 16 * P
    assert n_params(OneHotMLPSpec().build(DATA)) == 2 * P * 200 + 200 * 200 + 200 * P  # the paper's [200, 200]
    assert all(jax.tree.leaves(weights_only(params)))  # bias=False: every leaf is a weight


def test_onehot_mlp_init_is_pytorch_linear_without_bias():
    """nn.Linear's default init is U(±1/sqrt(fan_in)); fan_in is 2p for the first layer, H after."""
    model = OneHotMLPSpec(hidden_dim=32, depth=2).build(DATA)
    p = jax.jit(jax.vmap(model.init))(jax.random.split(jax.random.PRNGKey(1), 100))
    for name, fan_in in (("w_in", 2 * P), ("w_hidden_1", 32), ("w_out", 32)):
        w, bound = np.asarray(p[name]), 1 / np.sqrt(fan_in)
        assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound, name
        assert abs(w.var() / (bound**2 / 3) - 1) < 0.05, name
    assert not np.allclose(p["w_in"][0], p["w_in"][1])


def test_onehot_mlp_is_the_mlp_of_the_concatenated_one_hot_operands():
    module = OneHotMLP(P, P, 16, 2)
    a, b = DATA.columns()
    params = jax.tree.map(lambda x: np.asarray(x, np.float64),
                          module.init(jax.random.PRNGKey(2), a[:1], b[:1])["params"])
    x = np.concatenate([np.eye(P)[a], np.eye(P)[b]], axis=1)  # the reference's AlgorithmicDataset input
    h = np.maximum(np.maximum(x @ params["w_in"], 0) @ params["w_hidden_1"], 0)
    np.testing.assert_allclose(np.asarray(module.apply({"params": params}, a, b)), h @ params["w_out"],
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("model", [OneHotMLPSpec(hidden_dim=16)], ids=["onehot_mlp"])
def test_a_short_modular_sweep_runs_and_its_loss_falls(model, tmp_path):
    cfg = small(model=model, problem=PROBLEM, epochs=20, log_every=10, n_seeds=2, seeds_per_call=2)
    run_sweep(cfg, tmp_path / "s", workers=1, progress=False, log=lambda *a: None, cache_dir=None)
    saved = json.loads((tmp_path / "s" / "config.json").read_text())
    assert saved["sweep"]["model"] == model.to_dict() and saved["task"]["n_train"] == DATA.n_train
    loss = read_arrays(tmp_path / "s" / "traces.npz")["train_loss"]
    assert loss.shape == (2, 3) and np.all(loss[:, -1] < 0.9 * loss[:, 0])
    assert read_config(saved) == cfg


@pytest.mark.parametrize("model", [OneHotMLPSpec(hidden_dim=64, depth=3)], ids=["onehot_mlp"])
def test_model_spec_round_trips_through_the_config_schema(model):
    cfg = small(model=model, problem=PROBLEM)
    back = read_config(json.loads(json.dumps({"schema": 2, "sweep": cfg.to_dict(), "task": {}, "environment": {}})))
    assert back == cfg and type(back.model) is type(model) and MODELS[model.kind] is type(model)
