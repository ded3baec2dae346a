"""What MLP2 and MLP3 share: two token embeddings in, a ReLU layer, an unembedding out, and their spec.

Both take a pair (a, b) of tokens; `embeddings` and `unembed` create the parameters both models have, with the
same names and initialisation (embeddings N(0, 1), unembedding U(±1/sqrt(H)) as PyTorch's nn.Linear).
"""

import dataclasses

import flax.linen as nn

from grokjax.errors import UserError
from grokjax.models.base import flax_model, uniform_symmetric
from grokjax.specs import Spec


class PairMLP(nn.Module):
    """Fields of a model of token pairs: N tokens, sizes D and H, the unembedding bias, classes (default N)."""

    n: int
    embed_dim: int = 32
    hidden_dim: int = 32
    unembed_bias: bool = True
    n_out: int | None = None


def embeddings(module: nn.Module, n: int, d: int):
    """The left and right (n, d) embedding tables ~ N(0, 1)."""
    return (module.param("embed_left", nn.initializers.normal(1.0), (n, d)),
            module.param("embed_right", nn.initializers.normal(1.0), (n, d)))


def unembed(module: nn.Module, hidden, h: int, out: int, bias: bool):
    """Logits `hidden W_u (+ b_u)`, W_u (h, out) and b_u (out,) ~ U(±1/sqrt(h))."""
    logits = hidden @ module.param("w_unembed", uniform_symmetric(1 / h**0.5), (h, out))
    if bias:
        logits = logits + module.param("b_unembed", uniform_symmetric(1 / h**0.5), (out,))
    return logits


@dataclasses.dataclass(frozen=True)
class PairMLPSpec(Spec):
    """Sizes of a pair MLP: embedding D, hidden H, and whether the unembedding has a bias; `module` is its class."""

    embed_dim: int = 32
    hidden_dim: int = 32
    unembed_bias: bool = True

    def __post_init__(self):
        for name in ("embed_dim", "hidden_dim"):
            if getattr(self, name) < 1:
                raise UserError(f"{name.replace('_', ' ').capitalize()} must be a positive integer, got {getattr(self, name)}.")

    def homogeneity(self) -> int | None:
        """Without the output bias, the logits are homogeneous of degree 3 in the weights (embedding, hidden map,
        unembedding: ReLU is positively homogeneous); with it, not homogeneous (None)."""
        return None if self.unembed_bias else 3

    def build(self, data):
        x = data.inputs
        if x.ndim != 2 or x.shape[1] != 2 or x.dtype.kind not in "iu":
            raise UserError(f"The {self.kind} model needs inputs that are pairs of tokens.")
        n_out = None if data.n_classes == data.vocab else data.n_classes
        module = self.module(data.vocab, self.embed_dim, self.hidden_dim, self.unembed_bias, n_out)
        return flax_model(module, data.columns(data.train_idx[:1]))
