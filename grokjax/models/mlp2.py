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

from grokjax.models.base import uniform_symmetric
from grokjax.models.pair_mlp import PairMLP, PairMLPSpec, embeddings, unembed


class MLP2(PairMLP):
    """Two embeddings, a shared ReLU layer and an unembedding.

    Call with integer inputs `left`, `right` of shape (batch,) and get logits (batch, N).
    """

    @nn.compact
    def __call__(self, left, right):
        n, d, h = self.n, self.embed_dim, self.hidden_dim
        embed_l, embed_r = embeddings(self, n, d)
        w_l = self.param("w_left", uniform_symmetric(1 / (2 * d) ** 0.5), (d, h))
        w_r = self.param("w_right", uniform_symmetric(1 / (2 * d) ** 0.5), (d, h))
        hidden = nn.relu((embed_l @ w_l)[left] + (embed_r @ w_r)[right])
        return unembed(self, hidden, h, self.n_out or n, self.unembed_bias)


@dataclass(frozen=True)
class MLP2Spec(PairMLPSpec):
    """MLP2's sizes (defaults: the published D = H = 32, with unembedding bias)."""

    kind: ClassVar[str] = "mlp2"
    module: ClassVar[type] = MLP2
