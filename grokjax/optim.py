"""Optimisers as optax chains, with the hyperparameters a sweep varies passed in as (possibly traced) arrays.

`adam` and `sgd` add L2 decay to the gradients of the weights only (PyTorch's `weight_decay=` semantics, as
the published runs); `adamw` decays the weights directly (decoupled). A linear warmup of the learning rate
over the first `warmup_steps` optimizer steps is a schedule option (`make_optimizer(..., warmup_steps)`).
"""

import math
from dataclasses import dataclass

import jax.numpy as jnp
import optax

from grokjax.errors import UserError
from grokjax.models.base import weights_only
from grokjax.specs import Spec

OPTIMIZERS = ("adam", "adamw", "sgd")


@dataclass(frozen=True)
class OptimizerSpec(Spec):
    """Optimiser and its hyperparameters; defaults are the published setup (Adam, lr 1e-2, betas 0.9/0.98,
    L2 weight decay 2e-5 on the weights)."""

    kind: str = "adam"
    lr: float = 1e-2
    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1e-8
    weight_decay: float = 2e-5
    momentum: float = 0.0

    def __post_init__(self):
        if self.kind not in OPTIMIZERS:
            raise UserError(f"Unknown optimizer '{self.kind}'; expected one of {', '.join(OPTIMIZERS)}.")
        finite = all(math.isfinite(getattr(self, k)) for k in ("lr", "beta1", "beta2", "eps", "weight_decay", "momentum"))
        if not finite:
            raise UserError("Optimizer hyperparameters must be finite numbers.")
        if not self.lr > 0:
            raise UserError(f"The learning rate must be positive, got {self.lr}.")
        if self.weight_decay < 0:
            raise UserError(f"The weight decay must be non-negative, got {self.weight_decay}.")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1 and 0 <= self.momentum < 1):
            raise UserError("Adam betas and SGD momentum must lie in [0, 1).")
        if self.eps < 0:
            raise UserError(f"Adam epsilon must be non-negative, got {self.eps}.")

    def hparams(self) -> dict:
        """The hyperparameters a sweep may vary, as float32 arrays."""
        return {"lr": jnp.float32(self.lr), "weight_decay": jnp.float32(self.weight_decay)}


def make_optimizer(spec: OptimizerSpec, hparams: dict, params, warmup_steps: int = 0) -> optax.GradientTransformation:
    """The optimiser of `spec` with the learning rate and weight decay of `hparams` (arrays: a grid does not
    recompile); with `warmup_steps`, the learning rate rises linearly, lr (t + 1) / warmup_steps at step t."""
    lr, wd, mask = hparams["lr"], hparams["weight_decay"], weights_only(params)
    if warmup_steps:
        peak = lr
        lr = lambda count: peak * jnp.minimum(1.0, (count + 1) / warmup_steps)
    if spec.kind == "adamw":
        return optax.adamw(lr, spec.beta1, spec.beta2, spec.eps, weight_decay=wd, mask=mask)
    if spec.kind == "adam":
        core = optax.scale_by_adam(spec.beta1, spec.beta2, spec.eps)
    else:
        core = optax.trace(decay=spec.momentum) if spec.momentum else optax.identity()
    scale = optax.scale_by_learning_rate(lr) if warmup_steps else optax.scale(-lr)
    return optax.chain(optax.add_decayed_weights(wd, mask), core, scale)
