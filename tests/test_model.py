"""MLP2: the published initialisation statistics and a forward pass against numpy."""

import jax
import jax.numpy as jnp
import numpy as np
from grokjax.models import weight_norm, weights_only
from grokjax.models.mlp2 import MLP2

N, D, H = 24, 32, 16


def init_many(n_models, bias=True):
    model = MLP2(N, D, H, bias)
    x = jnp.zeros(1, jnp.int32)
    keys = jax.random.split(jax.random.PRNGKey(0), n_models)
    return jax.vmap(lambda k: model.init(k, x, x)["params"])(keys)


def test_init_statistics_match_the_published_setup():
    p = init_many(200)
    for name in ("embed_left", "embed_right"):  # N(0, 1): 200*24*32 samples, standard error of the mean 0.0026
        assert abs(float(p[name].mean())) < 0.012 and abs(float(p[name].std()) - 1) < 0.01
    for name, bound in (("w_left", 1 / np.sqrt(2 * D)), ("w_right", 1 / np.sqrt(2 * D)),
                        ("w_unembed", 1 / np.sqrt(H)), ("b_unembed", 1 / np.sqrt(H))):
        w = np.asarray(p[name])
        assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound  # uniform on [-bound, bound]
        assert abs(w.var() / (bound**2 / 3) - 1) < 0.05  # variance of U(-b, b) is b^2 / 3
    assert not np.allclose(p["embed_left"][0], p["embed_left"][1])  # each key its own model
    assert not np.allclose(p["embed_left"][0], p["embed_right"][0])


def test_unembed_bias_is_optional_and_excluded_from_weights():
    p = init_many(1, bias=False)
    assert "b_unembed" not in p
    p = jax.tree.map(lambda a: a[0], init_many(1))
    assert weights_only(p) == {k: k != "b_unembed" for k in p}
    expected = np.sqrt(sum(np.sum(np.asarray(v, np.float64) ** 2) for k, v in p.items() if k != "b_unembed"))
    assert np.isclose(float(weight_norm(p)), expected, rtol=1e-6)


def test_forward_matches_a_numpy_forward():
    p = jax.tree.map(lambda a: np.asarray(a[0], np.float64), init_many(1))
    a, b = np.array([0, 3, 23, 5]), np.array([1, 3, 0, 22])
    hidden = np.maximum(p["embed_left"][a] @ p["w_left"] + p["embed_right"][b] @ p["w_right"], 0)
    expected = hidden @ p["w_unembed"] + p["b_unembed"]
    got = MLP2(N, D, H).apply({"params": p}, a, b)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-5)
