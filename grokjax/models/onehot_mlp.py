"""The MLP on one-hot operands of Prieto et al., "Grokking at the edge of numerical stability" (2025).

Reference code (LucasPrietoAl/grokking-at-the-edge-of-numerical-stability, models.py `MLP`, utils.py
`get_model`): the input is the concatenation of the one-hot encodings of the two operands (length 2p), then
`hidden_sizes` = [200, 200] ReLU layers and a linear output of p logits, every nn.Linear with bias=False.

`h_1 = relu(onehot(x_0, ..., x_{k-1}) W_in)`, `h_{i+1} = relu(h_i W_i)`, `logits = h_depth W_out`. A one-hot row
times W_in is a gather, so the first layer is `W_in[x_0] + W_in[vocab + x_1] + ...` (the same function, no
(batch, 2p) one-hot matrix). Init as nn.Linear without bias, U(±1/sqrt(fan_in)): `w_in` (k vocab, H) with
fan_in = k vocab; `w_hidden_1` .. `w_hidden_{depth-1}` (H, H) and `w_out` (H, n_classes) with fan_in = H.
"""

from dataclasses import dataclass
from typing import ClassVar

import flax.linen as nn

from grokjax.errors import UserError
from grokjax.models.base import flax_model, uniform_symmetric
from grokjax.specs import Spec


class OneHotMLP(nn.Module):
    """`depth` bias-free ReLU layers of width `hidden_dim` on the concatenated one-hot tokens, then `n_out` logits."""

    vocab: int
    n_out: int
    hidden_dim: int = 200
    depth: int = 2

    @nn.compact
    def __call__(self, *tokens):
        fan_in, h = len(tokens) * self.vocab, self.hidden_dim
        w_in = self.param("w_in", uniform_symmetric(1 / fan_in**0.5), (fan_in, h))
        hidden = nn.relu(sum(w_in[k * self.vocab + x] for k, x in enumerate(tokens)))
        for i in range(1, self.depth):
            hidden = nn.relu(hidden @ self.param(f"w_hidden_{i}", uniform_symmetric(1 / h**0.5), (h, h)))
        return hidden @ self.param("w_out", uniform_symmetric(1 / h**0.5), (h, self.n_out))


@dataclass(frozen=True)
class OneHotMLPSpec(Spec):
    """The one-hot MLP's width and number of hidden layers (defaults: the paper's 200, 2)."""

    kind: ClassVar[str] = "onehot_mlp"
    hidden_dim: int = 200
    depth: int = 2

    def __post_init__(self):
        for name in ("hidden_dim", "depth"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise UserError(f"The one-hot MLP's {name.replace('_', ' ')} must be a positive integer, got {value!r}.")

    def homogeneity(self) -> int:
        """Bias-free ReLU layers: the logits are homogeneous of degree depth + 1 in the weights."""
        return self.depth + 1

    def build(self, data):
        x = data.inputs
        if x.ndim != 2 or x.dtype.kind not in "iu":
            raise UserError("The onehot_mlp model needs one row of tokens per point.")
        module = OneHotMLP(data.vocab, data.n_classes, self.hidden_dim, self.depth)
        return flax_model(module, data.columns(data.train_idx[:1]))
