"""A ReLU MLP on real-valued inputs: the two-layer network of concealed parity (Miller, Gleeson et al. 2024: width
1000, one hidden layer).

`h_1 = relu(x W_1 + b_1)`, `h_{i+1} = relu(h_i W_{i+1} + b_{i+1})`, `logits = h_depth W_out + b_out`. Every layer
is initialised as PyTorch's nn.Linear, weights and biases U(±1/sqrt(fan_in)): `w_hidden_1` (d_in, H), `w_hidden_i`
(H, H), `w_out` (H, n_classes), biases `b_hidden_i` (H,) and `b_out` (n_classes,) (not weights: no weight decay).
`init_width(key, w)` initialises the network of the first w input features inside one of d_in (the inputs beyond
w zero-padded): the first layer's bound is 1/sqrt(w) and its rows beyond w are zero. JAX draws each entry of an
array from its own position (`jax_threefry_partitionable`), so the first w rows are the very numbers a network of
width w draws.
"""

from dataclasses import dataclass
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from grokjax.errors import UserError
from grokjax.models.base import flax_model, uniform_symmetric
from grokjax.specs import Spec


class ReluMLP(nn.Module):
    """`depth` ReLU layers of width `hidden_dim` on a (batch, d_in) array, then `n_out` logits; biases optional."""

    d_in: int
    n_out: int
    hidden_dim: int = 1000
    depth: int = 1
    bias: bool = True

    def _linear(self, x, fan_in: int, width: int, name: str, init=None):
        init = init or uniform_symmetric(1 / fan_in**0.5)
        out = x @ self.param(f"w_{name}", init, (fan_in, width))
        return out + self.param(f"b_{name}", init, (width,)) if self.bias else out

    @nn.compact
    def __call__(self, x, in_width=None):
        """Logits of `x`; `in_width` (a traced integer, used only by `init`): see the module."""
        fan_in, first = self.d_in, None if in_width is None else _narrow_uniform(self.d_in, in_width)
        for i in range(1, self.depth + 1):
            x = nn.relu(self._linear(x, fan_in, self.hidden_dim, f"hidden_{i}", first if i == 1 else None))
            fan_in = self.hidden_dim
        return self._linear(x, fan_in, self.n_out, "out")


def _narrow_uniform(d_in: int, in_width):
    """The initialiser of a layer reading the first `in_width` of `d_in` features: U(±1/sqrt(in_width)) (the bound
    as `uniform_symmetric(1 / in_width**0.5)` computes it) and zero weight rows beyond `in_width`."""
    bounds = jnp.asarray(np.array([1 / max(w, 1)**0.5 for w in range(d_in + 1)], np.float32))

    def init(key, shape, dtype=jnp.float32):
        scale = bounds[in_width]
        drawn = jax.random.uniform(key, shape, dtype, -scale, scale)
        return jnp.where(jnp.arange(shape[0])[:, None] < in_width, drawn, 0) if len(shape) == 2 else drawn

    return init


@dataclass(frozen=True)
class ReluMLPSpec(Spec):
    """The MLP's width, number of hidden layers (defaults: concealed parity's 1000, 1) and biases."""

    kind: ClassVar[str] = "relu_mlp"
    hidden_dim: int = 1000
    depth: int = 1
    bias: bool = True

    def __post_init__(self):
        for name in ("hidden_dim", "depth"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise UserError(f"The ReLU MLP's {name.replace('_', ' ')} must be a positive integer, got {value!r}.")

    def build(self, data):
        x = data.inputs
        if x.ndim != 2 or x.dtype.kind != "f":
            raise UserError("The relu_mlp model needs real-valued inputs, one row per point (e.g. --problem parity).")
        module = ReluMLP(x.shape[1], data.n_classes, self.hidden_dim, self.depth, self.bias)
        example = data.columns(data.train_idx[:1])
        init_width = lambda key, width: module.init(key, *example, width)["params"]
        return flax_model(module, example)._replace(init_width=init_width)
