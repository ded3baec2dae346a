"""What every model is to the trainer: a pure `init(key) -> params` and `apply(params, inputs) -> logits`.

Models are flax modules wrapped by `flax_model`; `inputs` is a tuple of (batch,) token arrays, one per input
position (a group pair: left, right). Parameters are a (possibly nested) dict of arrays; a leaf named `b_...`,
`bias` (flax's Dense, LayerNorm) or `scale` (LayerNorm's gain) is not a weight, every other leaf is (weight
decay and the weight norm see weights only).
"""

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp


class Model(NamedTuple):
    """A model built for one problem's `Data`."""

    init: Callable  # key -> params
    apply: Callable  # (params, inputs) -> logits (batch, n_classes)
    init_width: Callable | None = None  # (key, width) -> params for the first `width` input features (the rest
    # zero-padded, their weights zero): models of real-valued inputs whose width is a grid axis (`Data.variants`)


def flax_model(module, example_inputs) -> Model:
    """The pure pair of a flax module called as `module(*inputs)`; `example_inputs` fixes the input shapes."""
    return Model(lambda key: module.init(key, *example_inputs)["params"],
                 lambda params, inputs: module.apply({"params": params}, *inputs))


def uniform_symmetric(scale: float):
    """Initialiser drawing from U(-scale, scale), as PyTorch's nn.Linear does with scale 1/sqrt(fan_in)."""

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -scale, scale)

    return init


def _is_weight(path) -> bool:
    name = str(getattr(path[-1], "key", path[-1]))
    return not (name.startswith("b_") or name in ("bias", "scale"))


def weights_only(params):
    """A PyTree of booleans marking the weights (True) and biases (False) of `params`."""
    return jax.tree_util.tree_map_with_path(lambda path, _: _is_weight(path), params)


def homogeneity(spec) -> int | None:
    """The degree L with logits(c θ) = c^L logits(θ) for c > 0 of a model spec whose logits are homogeneous in its
    weights (its `homogeneity()`), else None."""
    return spec.homogeneity() if hasattr(spec, "homogeneity") else None


def weight_norm(params):
    """L2 norm of all weights, biases excluded."""
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    return jnp.sqrt(sum(jnp.sum(x ** 2) for path, x in leaves if _is_weight(path)))


def n_params(model: Model) -> int:
    """Number of parameters of `model`, from shapes alone."""
    return sum(x.size for x in jax.tree.leaves(jax.eval_shape(model.init, jax.random.PRNGKey(0))))
