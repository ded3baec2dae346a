"""The MLP2 model of Chughtai et al. with its published initialisation.

`h = relu(E_l[a] W_l + E_r[b] W_r)`, `logits = h W_u (+ b_u)`. Because
`E[a] W = (E W)[a]`, the first layer is a lookup into the N x H tables
`E_l W_l` and `E_r W_r`. How the lookup is differentiated is pluggable: the
default gather works for any inputs; `distinct_pair_lookup` is the fast path for
training sets, whose pairs are distinct.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

WEIGHT_NAMES = ("embed_left", "embed_right", "w_left", "w_right", "w_unembed")
"""Parameters counted as weights (weight decay, weight norm); `b_unembed` is the only bias."""


def uniform_symmetric(scale: float):
    """Initialiser drawing from U(-scale, scale), as PyTorch's nn.Linear does."""

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -scale, scale)

    return init


def gather_lookup(table_l, table_r, left, right):
    """`table_l[left] + table_r[right]`, differentiated by JAX (a scatter-add backward pass)."""
    return table_l[left] + table_r[right]


def distinct_pair_lookup(left: np.ndarray, right: np.ndarray, n: int):
    """A lookup for a fixed set of distinct pairs whose backward pass is a gather and two sums.

    The cotangent of each pair is placed in a dense N x N x H array (a gather
    from the pairs' rows, zero elsewhere), and the tables' cotangents are its row
    and column sums: no scatter-add and no one-hot matmul, which are slow on CPU.
    """
    left, right = np.asarray(left), np.asarray(right)
    flat = left * n + right
    if len(np.unique(flat)) != len(flat):
        raise ValueError("distinct_pair_lookup needs distinct pairs.")
    slot = np.full(n * n, len(flat), np.int32)
    slot[flat] = np.arange(len(flat))

    @jax.custom_vjp
    def lookup(table_l, table_r):
        return table_l[left] + table_r[right]

    def bwd(_, grad):
        padded = jnp.concatenate([grad, jnp.zeros_like(grad[:1])])
        dense = padded[slot].reshape(n, n, grad.shape[-1])
        return dense.sum(1), dense.sum(0)

    lookup.defvjp(lambda t_l, t_r: (lookup(t_l, t_r), None), bwd)
    return lambda table_l, table_r, *_: lookup(table_l, table_r)


class MLP2(nn.Module):
    """Two embeddings, a shared ReLU layer and an unembedding.

    Call with integer inputs `left`, `right` of shape (batch,) and get logits (batch, N);
    `lookup` chooses how the first layer's lookup is differentiated.
    """

    n: int
    embed_dim: int = 32
    hidden_dim: int = 32
    unembed_bias: bool = True

    @nn.compact
    def __call__(self, left, right, lookup=gather_lookup):
        n, d, h = self.n, self.embed_dim, self.hidden_dim
        embed_l = self.param("embed_left", nn.initializers.normal(1.0), (n, d))
        embed_r = self.param("embed_right", nn.initializers.normal(1.0), (n, d))
        w_l = self.param("w_left", uniform_symmetric(1 / (2 * d) ** 0.5), (d, h))
        w_r = self.param("w_right", uniform_symmetric(1 / (2 * d) ** 0.5), (d, h))
        w_u = self.param("w_unembed", uniform_symmetric(1 / h**0.5), (h, n))
        hidden = nn.relu(lookup(embed_l @ w_l, embed_r @ w_r, left, right))
        logits = hidden @ w_u
        if self.unembed_bias:
            logits = logits + self.param("b_unembed", uniform_symmetric(1 / h**0.5), (n,))
        return logits


def weights_only(params):
    """A PyTree of booleans marking the weights (True) and biases (False) of `params`."""
    return {name: name in WEIGHT_NAMES for name in params}


def weight_norm(params):
    """L2 norm of all weights, biases excluded."""
    return jnp.sqrt(sum(jnp.sum(params[k] ** 2) for k in params if k in WEIGHT_NAMES))
