"""MLP3, the default model of the ambiguous-grokking study's code: embeddings summed, one ReLU layer, unembedding.

`h = relu((E_l[a] + E_r[b]) W)`, `logits = h W_u (+ b_u)`, computed as the gather `(E_l W)[a] + (E_r W)[b]`
(the same function: the N x H tables cost N D H instead of batch x D x H; the rounding differs from summing
first in the last bits). Init as the authors' PyTorch modules: `embed_left`, `embed_right` (N, D) ~ N(0, 1)
(nn.Embedding); `w_hidden` (D, H) ~ U(±1/sqrt(D)); `w_unembed` (H, N) and `b_unembed` (N,) ~ U(±1/sqrt(H))
(nn.Linear). Their Z48 x Z2 vs twZ48 runs use D = 32, H = 64.
"""

from dataclasses import dataclass
from typing import ClassVar

import flax.linen as nn

from grokjax.errors import UserError
from grokjax.models.base import flax_model, uniform_symmetric
from grokjax.models.mlp2 import check_pairs
from grokjax.specs import Spec


class MLP3(nn.Module):
    """Left and right embeddings summed, one linear map without bias, ReLU, unembedding."""

    n: int
    embed_dim: int = 32
    hidden_dim: int = 64
    unembed_bias: bool = True
    n_out: int | None = None

    @nn.compact
    def __call__(self, left, right):
        n, d, h = self.n, self.embed_dim, self.hidden_dim
        out = self.n_out or n
        embed_l = self.param("embed_left", nn.initializers.normal(1.0), (n, d))
        embed_r = self.param("embed_right", nn.initializers.normal(1.0), (n, d))
        w = self.param("w_hidden", uniform_symmetric(1 / d**0.5), (d, h))
        w_u = self.param("w_unembed", uniform_symmetric(1 / h**0.5), (h, out))
        hidden = nn.relu((embed_l @ w)[left] + (embed_r @ w)[right])
        logits = hidden @ w_u
        if self.unembed_bias:
            logits = logits + self.param("b_unembed", uniform_symmetric(1 / h**0.5), (out,))
        return logits


@dataclass(frozen=True)
class MLP3Spec(Spec):
    """MLP3's sizes (defaults: the authors' embed 32, hidden 64, with unembedding bias)."""

    kind: ClassVar[str] = "mlp3"
    embed_dim: int = 32
    hidden_dim: int = 64
    unembed_bias: bool = True

    def __post_init__(self):
        for name in ("embed_dim", "hidden_dim"):
            if getattr(self, name) < 1:
                raise UserError(f"{name.replace('_', ' ').capitalize()} must be a positive integer, got {getattr(self, name)}.")

    def build(self, data):
        check_pairs(data, self.kind)
        n_out = None if data.n_classes == data.vocab else data.n_classes
        module = MLP3(data.vocab, self.embed_dim, self.hidden_dim, self.unembed_bias, n_out)
        return flax_model(module, data.columns(data.train_idx[:1]))
