"""The MLP2 model of Chughtai et al. with its published initialisation (the ambiguous-grokking study's model).

`h = relu(E_l[a] W_l + E_r[b] W_r)`, `logits = h W_u (+ b_u)`. Because
`E[a] W = (E W)[a]`, the first layer is a gather from the N x H tables
`E_l W_l` and `E_r W_r`. (Measured on CPU at 64 seeds per call, the gather's
scatter-add backward pass beats both a one-hot matmul and a dense N x N x H
cotangent reduced by row and column sums.)

Parameters: `embed_left`, `embed_right` (N, D) ~ N(0, 1); `w_left`, `w_right` (D, H) ~ U(±1/sqrt(2D));
`w_unembed` (H, N) and `b_unembed` (N,) ~ U(±1/sqrt(H)).
"""

from dataclasses import dataclass
from typing import ClassVar

import flax.linen as nn

from grokjax.errors import UserError
from grokjax.models.base import flax_model, uniform_symmetric
from grokjax.specs import Spec


class MLP2(nn.Module):
    """Two embeddings, a shared ReLU layer and an unembedding.

    Call with integer inputs `left`, `right` of shape (batch,) and get logits (batch, N).
    """

    n: int
    embed_dim: int = 32
    hidden_dim: int = 32
    unembed_bias: bool = True
    n_out: int | None = None  # classes (default n)

    @nn.compact
    def __call__(self, left, right):
        n, d, h = self.n, self.embed_dim, self.hidden_dim
        out = self.n_out or n
        embed_l = self.param("embed_left", nn.initializers.normal(1.0), (n, d))
        embed_r = self.param("embed_right", nn.initializers.normal(1.0), (n, d))
        w_l = self.param("w_left", uniform_symmetric(1 / (2 * d) ** 0.5), (d, h))
        w_r = self.param("w_right", uniform_symmetric(1 / (2 * d) ** 0.5), (d, h))
        w_u = self.param("w_unembed", uniform_symmetric(1 / h**0.5), (h, out))
        hidden = nn.relu((embed_l @ w_l)[left] + (embed_r @ w_r)[right])
        logits = hidden @ w_u
        if self.unembed_bias:
            logits = logits + self.param("b_unembed", uniform_symmetric(1 / h**0.5), (out,))
        return logits


def check_pairs(data, name: str) -> None:
    """Models of two token embeddings need problems whose points are pairs."""
    if data.inputs.ndim != 2 or data.inputs.shape[1] != 2 or data.inputs.dtype.kind not in "iu":
        raise UserError(f"The {name} model needs inputs that are pairs of tokens.")


@dataclass(frozen=True)
class MLP2Spec(Spec):
    """MLP2's sizes: embedding D, hidden H, and whether the unembedding has a bias."""

    kind: ClassVar[str] = "mlp2"
    embed_dim: int = 32
    hidden_dim: int = 32
    unembed_bias: bool = True

    def __post_init__(self):
        for name in ("embed_dim", "hidden_dim"):
            if getattr(self, name) < 1:
                raise UserError(f"{name.replace('_', ' ').capitalize()} must be a positive integer, got {getattr(self, name)}.")

    def build(self, data):
        check_pairs(data, self.kind)
        n_out = None if data.n_classes == data.vocab else data.n_classes
        module = MLP2(data.vocab, self.embed_dim, self.hidden_dim, self.unembed_bias, n_out)
        return flax_model(module, data.columns(data.train_idx[:1]))
