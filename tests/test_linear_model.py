"""The linear model: on token pairs, the numpy linear map of the concatenated one-hot encodings with nn.Linear's
init U(±1/sqrt(2 vocab)); on real-valued inputs (a hand-built Data), x W + b; an SGD step with L2 weight decay
against a numpy gradient, which decays the weights and not the bias (nor does the weight norm see it).
"""

import jax
import numpy as np

from configs import S3_VS_A3Z2, small
from grokjax.models import LinearSpec, weight_norm, weights_only
from grokjax.problems import Data, GroupsProblem
from grokjax.train import make_trainer

DATA = GroupsProblem(S3_VS_A3Z2).build()
V = DATA.vocab  # 6


def one_hot_pairs(pairs):
    """(n, 2 V): the one-hot encodings of left and right tokens, concatenated."""
    return np.concatenate([np.eye(V)[pairs[:, 0]], np.eye(V)[pairs[:, 1]]], axis=1)


def test_token_pairs_give_the_linear_map_of_concatenated_one_hots():
    model = LinearSpec().build(DATA)
    keys = jax.random.split(jax.random.PRNGKey(0), 1000)
    many = jax.jit(jax.vmap(model.init))(keys)
    assert {k: v.shape for k, v in many.items()} == {"w_in_0": (1000, V, V), "w_in_1": (1000, V, V), "b_out": (1000, V)}
    bound = 1 / np.sqrt(2 * V)  # fan_in = 2 positions x vocab
    for name, w in many.items():
        w = np.asarray(w)
        assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound, name
        assert abs(w.var() / (bound**2 / 3) - 1) < 0.05, name  # >= 6000 samples: 4 standard errors
    p = jax.tree.map(lambda a: np.asarray(a[7], np.float64), many)
    expected = one_hot_pairs(DATA.inputs) @ np.concatenate([p["w_in_0"], p["w_in_1"]]) + p["b_out"]
    np.testing.assert_allclose(np.asarray(model.apply(p, DATA.columns())), expected, rtol=1e-6, atol=1e-6)
    assert "b_out" not in LinearSpec(bias=False).build(DATA).init(keys[0])


def test_real_valued_inputs_give_x_w_plus_b():
    x = np.random.default_rng(0).normal(size=(10, 3)).astype(np.float32)
    labels = (x[:, 0] > 0).astype(np.int32)
    data = Data(inputs=x, vocab=0, n_classes=2, train_idx=np.arange(6, dtype=np.int32), train_labels=labels[:6],
                eval_labels=labels[None], eval_names=("teacher",))
    model = LinearSpec().build(data)
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), model.init(jax.random.PRNGKey(1)))
    assert {k: v.shape for k, v in p.items()} == {"w_in": (3, 2), "b_out": (2,)}
    assert np.abs(p["w_in"]).max() <= 1 / np.sqrt(3) and np.abs(p["b_out"]).max() <= 1 / np.sqrt(3)
    got = np.asarray(model.apply(p, data.columns()))
    np.testing.assert_allclose(got, x @ p["w_in"] + p["b_out"], rtol=1e-5, atol=1e-6)


def test_bias_is_excluded_from_weight_norm_and_weight_decay():
    cfg = small(model=LinearSpec(), epochs=1, log_every=1, kind="sgd", lr=0.5, weight_decay=0.1)
    trainer = make_trainer(DATA, cfg)
    state = jax.jit(trainer.init)(jax.random.PRNGKey(2))
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), state.params)
    assert weights_only(p) == {"w_in_0": True, "w_in_1": True, "b_out": False}
    norm = np.sqrt(np.sum(p["w_in_0"] ** 2) + np.sum(p["w_in_1"] ** 2))
    assert np.isclose(float(weight_norm(p)), norm, rtol=1e-6)
    new = jax.tree.map(np.asarray, jax.jit(trainer.step)(state, cfg.hparams()).params)

    x = one_hot_pairs(DATA.inputs[DATA.train_idx])  # the gradient of the mean cross-entropy by hand
    logits = x @ np.concatenate([p["w_in_0"], p["w_in_1"]]) + p["b_out"]
    probs = np.exp(logits - logits.max(1, keepdims=True))
    dlogits = (probs / probs.sum(1, keepdims=True) - np.eye(V)[DATA.train_labels]) / DATA.n_train
    dw = x.T @ dlogits
    expected = {"w_in_0": p["w_in_0"] - 0.5 * (dw[:V] + 0.1 * p["w_in_0"]),
                "w_in_1": p["w_in_1"] - 0.5 * (dw[V:] + 0.1 * p["w_in_1"]),
                "b_out": p["b_out"] - 0.5 * dlogits.sum(0)}  # no decay
    for k in p:
        np.testing.assert_allclose(new[k], expected[k], rtol=1e-5, atol=1e-6, err_msg=k)
