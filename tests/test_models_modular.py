"""The modular-arithmetic model families: the one-hot MLP of Prieto et al. (2025) and the small transformer of
Power et al. / Nanda et al.: parameter shapes against a hand count, init statistics against the reference's
PyTorch modules, the forward pass against numpy, and a short sweep on x + y mod 7 whose loss falls.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import small
from grokjax.models import MODELS, OneHotMLPSpec, TransformerSpec, n_params, weights_only
from grokjax.models.onehot_mlp import OneHotMLP
from grokjax.models.transformer import Transformer
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


@pytest.mark.parametrize("model", [OneHotMLPSpec(hidden_dim=16), TransformerSpec(n_layers=1, d_model=16, n_heads=2, layer_norm=False)],
                         ids=["onehot_mlp", "transformer"])
def test_a_short_modular_sweep_runs_and_its_loss_falls(model, tmp_path):
    cfg = small(model=model, problem=PROBLEM, epochs=20, log_every=10, n_seeds=2, seeds_per_call=2)
    run_sweep(cfg, tmp_path / "s", workers=1, progress=False, log=lambda *a: None, cache_dir=None)
    saved = json.loads((tmp_path / "s" / "config.json").read_text())
    assert saved["sweep"]["model"] == model.to_dict() and saved["task"]["n_train"] == DATA.n_train
    loss = read_arrays(tmp_path / "s" / "traces.npz")["train_loss"]
    assert loss.shape == (2, 3) and np.all(loss[:, -1] < 0.9 * loss[:, 0])
    assert read_config(saved) == cfg


@pytest.mark.parametrize("model", [OneHotMLPSpec(hidden_dim=64, depth=3), TransformerSpec(1, 16, 2, 32, False)],
                         ids=["onehot_mlp", "transformer"])
def test_model_spec_round_trips_through_the_config_schema(model):
    cfg = small(model=model, problem=PROBLEM)
    back = read_config(json.loads(json.dumps({"schema": 2, "sweep": cfg.to_dict(), "task": {}, "environment": {}})))
    assert back == cfg and type(back.model) is type(model) and MODELS[model.kind] is type(model)


def transformer_params(spec, seeds):
    model = spec.build(DATA)
    return model, jax.jit(jax.vmap(model.init))(jax.random.split(jax.random.PRNGKey(3), seeds))


def test_transformer_shapes_match_a_hand_count():
    d, h, m, v = 16, 4, 24, P + 2  # width, heads, MLP width, vocabulary with op and "="
    model, _ = transformer_params(TransformerSpec(2, d, h, m, True), 1)
    params = jax.eval_shape(model.init, jax.random.PRNGKey(0))
    layer = {"w_q": (d, h, d // h), "w_k": (d, h, d // h), "w_v": (d, h, d // h), "w_o": (h, d // h, d),
             "w_in": (d, m), "w_out": (m, d)}
    ln = {"scale": (d,), "bias": (d,)}
    assert jax.tree.map(lambda x: x.shape, params) == {
        "embed": (v, d), "pos_embed": (4, d), "w_unembed": (d, P),
        **{f"{k}_{i}": s for i in range(2) for k, s in layer.items()},
        **{f"{k}_{i}": ln for i in range(2) for k in ("ln_attn", "ln_mlp")}}
    assert n_params(model) == v * d + 4 * d + d * P + 2 * (4 * d * d + 2 * d * m + 4 * d)
    flags = weights_only(params)
    assert not any(jax.tree.leaves(flags["ln_mlp_1"])) and flags["w_q_0"] and flags["embed"]
    nanda = TransformerSpec(n_layers=1, layer_norm=False).build(ModularProblem(p=113).build())
    assert n_params(nanda) == 115 * 128 + 4 * 128 + 4 * 128 * 128 + 2 * 128 * 512 + 128 * 113
    power = TransformerSpec().build(DATA)  # 2 layers, width 128, 4 heads, d_mlp 4 x 128, LayerNorm
    assert n_params(power) == v * 128 + 4 * 128 + 128 * P + 2 * (4 * 128 * 128 + 2 * 128 * 512 + 4 * 128)


def test_transformer_init_is_pytorch_embedding_and_linear():
    model, p = transformer_params(TransformerSpec(1, 32, 4, 64, True), 40)
    for name in ("embed", "pos_embed"):  # nn.Embedding: N(0, 1)
        assert abs(float(p[name].mean())) < 0.03 and abs(float(p[name].std()) - 1) < 0.03, name
    for name, fan_in in (("w_q_0", 32), ("w_o_0", 32), ("w_in_0", 32), ("w_out_0", 64), ("w_unembed", 32)):
        w, bound = np.asarray(p[name]), 1 / np.sqrt(fan_in)  # nn.Linear: U(±1/sqrt(fan_in))
        assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound, name
        assert abs(w.var() / (bound**2 / 3) - 1) < 0.06, name
    assert np.all(p["ln_attn_0"]["scale"] == 1) and np.all(p["ln_attn_0"]["bias"] == 0)
    assert not np.allclose(p["w_q_0"][0], p["w_k_0"][0])


@pytest.mark.parametrize("layer_norm", [True, False])
def test_transformer_is_causal_and_predicts_at_the_last_position(layer_norm):
    module = Transformer(P, P, 2, 16, 4, 32, layer_norm)
    a, b = (jnp.asarray(c) for c in DATA.columns())
    params = module.init(jax.random.PRNGKey(4), a[:1], b[:1])["params"]
    seq = jnp.stack([a, jnp.full_like(a, P), b, jnp.full_like(a, P + 1)], axis=1)
    logits = jax.jit(lambda s: module.apply({"params": params}, s, method=Transformer.sequence_logits))
    every = logits(seq)
    assert every.shape == (len(a), 4, P)
    last = jax.jit(lambda x, y: module.apply({"params": params}, x, y))(a, b)
    np.testing.assert_allclose(last, every[:, -1], rtol=1e-5, atol=1e-5)
    for pos in range(1, 4):  # another token at `pos` leaves every earlier position as it was, and changes `pos`
        other = logits(seq.at[:, pos].set((seq[:, pos] + 1) % P))
        np.testing.assert_array_equal(other[:, :pos], every[:, :pos])
        assert not np.allclose(other[:, pos], every[:, pos])


def test_transformer_seeds_do_not_interact_in_a_vmapped_batch():
    model, params = transformer_params(TransformerSpec(2, 16, 4, 32, True), 3)
    inputs = tuple(jnp.asarray(c) for c in DATA.columns())
    apply = jax.jit(jax.vmap(model.apply, in_axes=(0, None)))
    together = apply(params, inputs)
    for i in range(3):
        alone = jax.tree.map(lambda x: jnp.stack([x[i]] * 3), params)  # seed i thrice: the same batch shape
        np.testing.assert_array_equal(apply(alone, inputs)[0], together[i])
        single = jax.jit(model.apply)(jax.tree.map(lambda x: x[i], params), inputs)
        np.testing.assert_allclose(single, together[i], rtol=1e-5, atol=1e-5)
    assert not np.allclose(together[0], together[1])


def test_the_grokfast_decoder_normalizes_before_each_sublayer_and_at_the_end():
    """block="grokfast", attention zeroed: each block is x = ln_1(x); x = x + mlp(ln_2(x)) with a GELU MLP with
    biases (the residual is added to the normalized stream), then a final LayerNorm and the unembedding: the
    structure of the Grokfast code's decoder, computed by hand in numpy."""
    import jax
    import jax.numpy as jnp
    from scipy.special import erf

    from grokjax.models.transformer import Transformer

    model = Transformer(5, 5, n_layers=2, d_model=8, n_heads=2, d_mlp=16, block="grokfast")
    left, right = jnp.array([0, 1, 4]), jnp.array([2, 3, 4])
    params = model.init(jax.random.PRNGKey(0), left, right)["params"]
    attention = ("w_q", "w_k", "w_v", "w_o", "b_q", "b_k", "b_v", "b_o")
    zeroed = {k: jnp.zeros_like(v) if k.rsplit("_", 1)[0] in attention else v for k, v in params.items()}
    P = jax.tree.map(np.asarray, params)
    x = P["embed"][np.stack([left, np.full(3, 5), right, np.full(3, 6)], -1)] + P["pos_embed"]
    ln = lambda y, p: (y - y.mean(-1, keepdims=True)) / np.sqrt(y.var(-1, keepdims=True) + 1e-5) * p["scale"] + p["bias"]
    gelu = lambda z: 0.5 * z * (1 + erf(z / np.sqrt(2)))
    for i in range(2):
        x = ln(x, P[f"ln_1_{i}"])
        h = gelu(ln(x, P[f"ln_2_{i}"]) @ P[f"w_in_{i}"] + P[f"b_in_{i}"])
        x = x + h @ P[f"w_out_{i}"] + P[f"b_out_{i}"]
    want = ln(x, P["ln_f"])[:, -1] @ P["w_unembed"]
    np.testing.assert_allclose(model.apply({"params": zeroed}, left, right), want, rtol=1e-4, atol=1e-5)
