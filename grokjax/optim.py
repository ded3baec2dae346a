"""Optimisers as optax chains, with the hyperparameters a sweep varies passed in as (possibly traced) arrays.

`adam` and `sgd` add L2 decay to the gradients of the weights only (PyTorch's `weight_decay=` semantics, as
the published runs); `adamw` decays the weights directly (decoupled). A linear warmup of the learning rate
over the first `warmup_steps` optimizer steps is a schedule option (`make_optimizer(..., warmup_steps)`).
Accelerators (`grokjax.accelerators`: a Grokfast filter, ⊥Grad) are chained in front of the optimizer, on the raw
loss gradient before any weight decay, as in their references; without them the optimizer is unchanged.
"""

import math
from dataclasses import dataclass

import jax.numpy as jnp
import optax

from grokjax.accelerators import grokfast_ema, grokfast_ma, orthograd
from grokjax.errors import UserError
from grokjax.models.base import weights_only
from grokjax.specs import Spec

OPTIMIZERS = ("adam", "adamw", "sgd")
FILTERS = ("none", "ema", "ma")


@dataclass(frozen=True)
class OptimizerSpec(Spec):
    """Optimiser and its hyperparameters; defaults are the published setup (Adam, lr 1e-2, betas 0.9/0.98,
    L2 weight decay 2e-5 on the weights), no accelerator. `filter` is a Grokfast gradient filter ("ema": alpha,
    lambda; "ma": window, lambda; defaults the Grokfast paper's EMA setting for algorithmic data); `ortho` adds
    ⊥Grad."""

    kind: str = "adam"
    lr: float = 1e-2
    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1e-8
    weight_decay: float = 2e-5
    momentum: float = 0.0
    filter: str = "none"
    filter_alpha: float = 0.98
    filter_lambda: float = 2.0
    filter_window: int = 100
    ortho: bool = False

    def __post_init__(self):
        if self.kind not in OPTIMIZERS:
            raise UserError(f"Unknown optimizer '{self.kind}'; expected one of {', '.join(OPTIMIZERS)}.")
        if self.filter not in FILTERS:
            raise UserError(f"Unknown gradient filter '{self.filter}'; expected one of {', '.join(FILTERS)}.")
        if not (0 <= self.filter_alpha <= 1 and self.filter_window >= 1):
            raise UserError("The Grokfast alpha must lie in [0, 1] and its window be a positive integer.")
        floats = ("lr", "beta1", "beta2", "eps", "weight_decay", "momentum", "filter_alpha", "filter_lambda")
        finite = all(math.isfinite(getattr(self, k)) for k in floats)
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

    def hparam_names(self) -> tuple[str, ...]:
        """The hyperparameters a sweep may vary (the filter's only with a filter)."""
        return ("lr", "weight_decay") + (("filter_alpha", "filter_lambda") if self.filter != "none" else ())

    def hparams(self) -> dict:
        """`hparam_names` at this spec's values, as float32 arrays."""
        return {name: jnp.float32(getattr(self, name)) for name in self.hparam_names()}


def make_optimizer(spec: OptimizerSpec, hparams: dict, params, warmup_steps: int = 0) -> optax.GradientTransformation:
    """The optimiser of `spec` with the hyperparameters of `hparams` (arrays: a grid does not recompile), behind
    its accelerators if any; with `warmup_steps` W, the learning rate rises linearly, lr min(1, t / W) at step t
    (PyTorch's `LambdaLR(lambda t: min(1, t / W))` stepped after each update, as the Grokfast code warms up: the
    first update has learning rate 0 and only feeds the optimizer's moments)."""
    front = accelerators(spec, hparams)
    base = base_optimizer(spec, hparams, params, warmup_steps)
    return optax.chain(*front, base) if front else base  # no accelerator: the same optimizer state as before


def accelerators(spec: OptimizerSpec, hparams: dict) -> list:
    """The Grokfast filter, then ⊥Grad, as `spec` asks (the filter's alpha and lambda from `hparams`)."""
    front = []
    if spec.filter == "ema":
        front.append(grokfast_ema(hparams["filter_alpha"], hparams["filter_lambda"]))
    elif spec.filter == "ma":
        front.append(grokfast_ma(spec.filter_window, hparams["filter_lambda"]))
    if spec.ortho:
        front.append(orthograd())
    return front


def base_optimizer(spec: OptimizerSpec, hparams: dict, params, warmup_steps: int = 0) -> optax.GradientTransformation:
    """The optimiser of `spec` alone (see `make_optimizer`)."""
    lr, wd, mask = hparams["lr"], hparams["weight_decay"], weights_only(params)
    if warmup_steps:
        peak = lr
        lr = lambda count: peak * jnp.minimum(1.0, count / warmup_steps)
    if spec.kind == "adamw":
        return optax.adamw(lr, spec.beta1, spec.beta2, spec.eps, weight_decay=wd, mask=mask)
    if spec.kind == "adam":
        core = optax.scale_by_adam(spec.beta1, spec.beta2, spec.eps)
    else:
        core = optax.trace(decay=spec.momentum) if spec.momentum else optax.identity()
    scale = optax.scale_by_learning_rate(lr) if warmup_steps else optax.scale(-lr)
    return optax.chain(optax.add_decayed_weights(wd, mask), core, scale)
