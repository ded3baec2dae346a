"""The straight-line threefry lowering on CPU (grokjax.rng): the same bits as JAX's rolled loop, and no loop."""

import json
import subprocess
import sys

import jax

from grokjax.rng import use_straight_threefry

PROGRAM = """
import json, jax

def draws(key):
    k = jax.random.fold_in(key, 7)
    with jax.threefry_partitionable(False):
        old = jax.random.normal(k, (5, 7))
    return [jax.random.bits(k, (11,)), jax.random.normal(k, (5, 7)), old, jax.random.permutation(k, 13),
            jax.random.split(key, 3)]

def report():
    key = jax.random.PRNGKey(3)
    hlo = jax.jit(draws).lower(key).compile().as_text()
    return json.dumps({"loop": " while(" in hlo, "draws": [a.tolist() for a in jax.jit(draws)(key)]})
"""


def test_straight_threefry_draws_the_bits_of_the_rolled_loop_without_a_loop():
    """In a fresh process JAX's CPU lowering loops; here (grokjax registered the straight one) the same draws
    come out bit for bit, without the loop."""
    fresh = subprocess.run([sys.executable, "-c", PROGRAM + "print(report())"], capture_output=True, text=True,
                           check=True)
    rolled = json.loads(fresh.stdout)
    assert use_straight_threefry()
    namespace = {}
    exec(PROGRAM, namespace)
    straight = json.loads(namespace["report"]())
    if jax.default_backend() == "cpu":
        assert rolled["loop"] and not straight["loop"]
    assert straight["draws"] == rolled["draws"]
