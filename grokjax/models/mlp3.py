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

from grokjax.models.base import uniform_symmetric
from grokjax.models.pair_mlp import PairMLP, PairMLPSpec, embeddings, unembed


class MLP3(PairMLP):
    """Left and right embeddings summed, one linear map without bias, ReLU, unembedding."""

    hidden_dim: int = 64

    @nn.compact
    def __call__(self, left, right):
        n, d, h = self.n, self.embed_dim, self.hidden_dim
        embed_l, embed_r = embeddings(self, n, d)
        w = self.param("w_hidden", uniform_symmetric(1 / d**0.5), (d, h))
        hidden = nn.relu((embed_l @ w)[left] + (embed_r @ w)[right])
        return unembed(self, hidden, h, self.n_out or n, self.unembed_bias)


@dataclass(frozen=True)
class MLP3Spec(PairMLPSpec):
    """MLP3's sizes (defaults: the authors' embed 32, hidden 64, with unembedding bias)."""

    kind: ClassVar[str] = "mlp3"
    module: ClassVar[type] = MLP3
    hidden_dim: int = 64
