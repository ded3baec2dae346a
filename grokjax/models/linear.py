"""A linear model: logits (or outputs) an affine function of the input, as nn.Linear initialises it.

On token inputs (one row of tokens per point) it is the linear map of the concatenated one-hot encodings:
`logits = W_0[x_0] + W_1[x_1] + ... (+ b_out)`, one (vocab, n_out) table `w_in_k` per position, all drawn
U(±1/sqrt(fan_in)) with fan_in = positions x vocab. On real-valued inputs (the linear student-teacher problem)
it is `x W (+ b_out)` with `w_in` (d_in, n_out) ~ U(±1/sqrt(d_in)). It has no hidden layer, so it cannot
generalise beyond what is linear in the one-hot inputs: a baseline, and the student of Levi et al.
"""

from dataclasses import dataclass
from typing import ClassVar

import flax.linen as nn

from grokjax.errors import UserError
from grokjax.models.base import flax_model, uniform_symmetric
from grokjax.specs import Spec


class Linear(nn.Module):
    vocab: int  # 0 for real-valued inputs
    fan_in: int
    n_out: int
    bias: bool = True

    @nn.compact
    def __call__(self, *inputs):
        scale = 1 / self.fan_in**0.5
        if self.vocab:
            out = sum(self.param(f"w_in_{k}", uniform_symmetric(scale), (self.vocab, self.n_out))[x]
                      for k, x in enumerate(inputs))
        else:
            out = inputs[0] @ self.param("w_in", uniform_symmetric(scale), (self.fan_in, self.n_out))
        if self.bias:
            out = out + self.param("b_out", uniform_symmetric(scale), (self.n_out,))
        return out


@dataclass(frozen=True)
class LinearSpec(Spec):
    kind: ClassVar[str] = "linear"
    bias: bool = True

    def homogeneity(self) -> int | None:
        """Without a bias the logits are linear in the weights (degree 1); with one, not homogeneous (None)."""
        return None if self.bias else 1

    def build(self, data):
        x = data.inputs
        if x.ndim != 2:
            raise UserError("The linear model needs one row of inputs per point.")
        if x.dtype.kind in "iu":
            module = Linear(data.vocab, x.shape[1] * data.vocab, data.n_classes, self.bias)
            return flax_model(module, data.columns(data.train_idx[:1]))
        module = Linear(0, x.shape[1], data.n_classes, self.bias)
        return flax_model(module, (x[data.train_idx[:1]],))
