"""A small decoder-only transformer reading `x o y =`: the model of Power et al. (2022) and, without LayerNorm,
of Nanda et al. (2023), predicting the answer at the last position.

The sequence is (x, op, y, =) with the operand tokens 0 .. N-1, the op token N and "=" N + 1 (embedding vocabulary
N + 2; the model appends them to the (batch,) token pairs it is called with); the logits are over the problem's
classes. Each of `n_layers` blocks is causal multi-head self-attention (`n_heads` heads of d_model / n_heads,
no biases, scores scaled by 1/sqrt(d_head)) and a ReLU MLP of width d_mlp (no biases), each added to the residual
stream; with `layer_norm` a LayerNorm follows each addition (post-LN, as Power et al.'s code, openai/grok
grok/transformer.py `DecoderBlock`), without it the stream is the sum (Nanda et al.'s 1-layer model has no
LayerNorm). Positional embeddings are learned.

Init as the PyTorch modules of openai/grok: `embed` (N + 2, d) and `pos_embed` (4, d) ~ N(0, 1) (nn.Embedding);
every linear map U(±1/sqrt(fan_in)) (nn.Linear): `w_q`, `w_k`, `w_v` (d, heads, d_head), `w_o` (heads, d_head, d)
and `w_in` (d, d_mlp) with fan_in d, `w_out` (d_mlp, d) with fan_in d_mlp, `w_unembed` (d, classes) with
fan_in d; LayerNorm `scale` 1, `bias` 0, epsilon 1e-5. (Nanda et al. draw N(0, 1/d) and give the MLP zero
biases; that init is not reproduced here.)

`block="grokfast"` is instead the decoder of the Grokfast paper's code (ironjr/grokfast main.py `Decoder`, the
model behind its x*y mod 97 headline): each block normalizes the stream first and adds to the *normalized* stream
(`x = ln_1(x); x = x + attn(x); x = x + mlp(ln_2(x))`, as that code writes it), attention through PyTorch's
`nn.MultiheadAttention` (in-projection xavier-uniform over the (3d, d) matrix, zero in- and out-projection biases,
out-projection U(±1/sqrt(d))), a GELU MLP of width d_mlp with biases (nn.Linear init), a final LayerNorm and an
unembedding without bias. Its logits here are over the problem's classes (the reference's head also scores the
op and "=" tokens, which never win once trained).
"""

from dataclasses import dataclass
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from grokjax.errors import UserError
from grokjax.models.base import flax_model, uniform_symmetric
from grokjax.specs import Spec

SEQ_LEN = 4  # x, op, y, =
BLOCKS = ("power", "grokfast")


class Transformer(nn.Module):
    """Tokens 0 .. vocab - 1 (plus op and "=" tokens) in, `n_out` logits at the last position out."""

    vocab: int
    n_out: int
    n_layers: int = 2
    d_model: int = 128
    n_heads: int = 4
    d_mlp: int = 512
    layer_norm: bool = True
    block: str = "power"

    def __call__(self, left, right):
        """Logits (batch, n_out) of the answer to `left o right =`."""
        op, eq = jnp.full_like(left, self.vocab), jnp.full_like(left, self.vocab + 1)
        return self.sequence_logits(jnp.stack([left, op, right, eq], axis=-1))[:, -1]

    @nn.compact
    def sequence_logits(self, seq):
        """Logits (batch, positions, n_out) at every position of the token sequences `seq` (batch, positions)."""
        d, heads = self.d_model, self.n_heads
        dh, n = d // heads, seq.shape[-1]
        x = (self.param("embed", nn.initializers.normal(1.0), (self.vocab + 2, d))[seq]
             + self.param("pos_embed", nn.initializers.normal(1.0), (SEQ_LEN, d))[:n])
        causal = jnp.tril(jnp.ones((n, n), bool))
        if self.block == "grokfast":
            return self.grokfast_blocks(x, causal)
        norm = (lambda name: nn.LayerNorm(1e-5, name=name)) if self.layer_norm else (lambda name: lambda y: y)
        for i in range(self.n_layers):
            w = lambda name, shape, fan_in: self.param(f"{name}_{i}", uniform_symmetric(1 / fan_in**0.5), shape)
            q, k, v = (jnp.einsum("bnd,dhe->bhne", x, w(name, (d, heads, dh), d)) for name in ("w_q", "w_k", "w_v"))
            scores = jnp.where(causal, jnp.einsum("bhqe,bhke->bhqk", q, k) / dh**0.5, -jnp.inf)
            attended = jnp.einsum("bhqk,bhke->bhqe", nn.softmax(scores, axis=-1), v)
            x = norm(f"ln_attn_{i}")(x + jnp.einsum("bhne,hed->bnd", attended, w("w_o", (heads, dh, d), d)))
            hidden = nn.relu(x @ w("w_in", (d, self.d_mlp), d))
            x = norm(f"ln_mlp_{i}")(x + hidden @ w("w_out", (self.d_mlp, d), self.d_mlp))
        return x @ self.param("w_unembed", uniform_symmetric(1 / d**0.5), (d, self.n_out))

    def grokfast_blocks(self, x, causal):
        """The blocks, final LayerNorm and unembedding of the Grokfast reference's decoder (see the module)."""
        d, heads, m = self.d_model, self.n_heads, self.d_mlp
        dh = d // heads
        xavier = uniform_symmetric((6 / (d + 3 * d)) ** 0.5)  # xavier_uniform_ of the (3d, d) in_proj_weight
        zeros = nn.initializers.zeros
        for i in range(self.n_layers):
            p = lambda name, init, shape: self.param(f"{name}_{i}", init, shape)
            x = nn.LayerNorm(1e-5, name=f"ln_1_{i}")(x)
            q, k, v = (jnp.einsum("bnd,dhe->bhne", x, p(f"w_{c}", xavier, (d, heads, dh))) + p(f"b_{c}", zeros, (heads, 1, dh))
                       for c in "qkv")
            scores = jnp.where(causal, jnp.einsum("bhqe,bhke->bhqk", q, k) / dh**0.5, -jnp.inf)
            attended = jnp.einsum("bhqk,bhke->bhqe", nn.softmax(scores, axis=-1), v)
            x = x + jnp.einsum("bhne,hed->bnd", attended, p("w_o", uniform_symmetric(1 / d**0.5), (heads, dh, d))) \
                + p("b_o", zeros, (d,))
            h = nn.LayerNorm(1e-5, name=f"ln_2_{i}")(x)
            h = jax.nn.gelu(h @ p("w_in", uniform_symmetric(1 / d**0.5), (d, m)) + p("b_in", uniform_symmetric(1 / d**0.5), (m,)),
                            approximate=False)
            x = x + h @ p("w_out", uniform_symmetric(1 / m**0.5), (m, d)) + p("b_out", uniform_symmetric(1 / m**0.5), (d,))
        x = nn.LayerNorm(1e-5, name="ln_f")(x)
        return x @ self.param("w_unembed", uniform_symmetric(1 / d**0.5), (d, self.n_out))


@dataclass(frozen=True)
class TransformerSpec(Spec):
    """Sizes of the transformer (defaults Power et al.'s: 2 layers, width 128, 4 heads, LayerNorm); `d_mlp` None
    is 4 d_model. Nanda et al.'s model: `TransformerSpec(n_layers=1, d_mlp=512, layer_norm=False)`; the Grokfast
    code's: `TransformerSpec(block="grokfast")`."""

    kind: ClassVar[str] = "transformer"
    n_layers: int = 2
    d_model: int = 128
    n_heads: int = 4
    d_mlp: int | None = None
    layer_norm: bool = True
    block: str = "power"

    def __post_init__(self):
        for name in ("n_layers", "d_model", "n_heads") + (("d_mlp",) if self.d_mlp is not None else ()):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise UserError(f"The transformer's {name} must be a positive integer, got {value!r}.")
        if self.d_model % self.n_heads:
            raise UserError(f"The transformer's d_model {self.d_model} is not a multiple of n_heads {self.n_heads}.")
        if type(self.layer_norm) is not bool:
            raise UserError(f"The transformer's layer_norm must be true or false, got {self.layer_norm!r}.")
        if self.block not in BLOCKS:
            raise UserError(f"Unknown transformer block {self.block!r}; expected one of {', '.join(BLOCKS)}.")
        if self.block == "grokfast" and not self.layer_norm:
            raise UserError("The Grokfast decoder's blocks have LayerNorm; leave layer_norm on with block grokfast.")

    def build(self, data):
        x = data.inputs
        if x.ndim != 2 or x.shape[1] != 2 or x.dtype.kind not in "iu":
            raise UserError("The transformer model needs inputs that are pairs of tokens.")
        module = Transformer(data.vocab, data.n_classes, self.n_layers, self.d_model, self.n_heads,
                             self.d_mlp or 4 * self.d_model, self.layer_norm, self.block)
        return flax_model(module, data.columns(data.train_idx[:1]))
