"""Models: `MODELS` maps each spec's `kind` to its class; `spec.build(data)` gives the pure `Model` pair."""

from grokjax.models.base import Model, n_params, weight_norm, weights_only
from grokjax.models.linear import LinearSpec
from grokjax.models.mlp2 import MLP2Spec
from grokjax.models.mlp3 import MLP3Spec
from grokjax.models.onehot_mlp import OneHotMLPSpec
from grokjax.models.relu_mlp import ReluMLPSpec
from grokjax.models.transformer import TransformerSpec

MODELS = {cls.kind: cls for cls in (MLP2Spec, MLP3Spec, LinearSpec, OneHotMLPSpec, TransformerSpec, ReluMLPSpec)}

__all__ = ["MODELS", "Model", "MLP2Spec", "MLP3Spec", "LinearSpec", "OneHotMLPSpec", "ReluMLPSpec", "TransformerSpec", "n_params",
           "weight_norm", "weights_only"]
