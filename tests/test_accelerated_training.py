"""Accelerators and losses wired into training: neutral settings change nothing, a filter grid is one program,
and old configs read back unchanged."""

import dataclasses

import jax
import numpy as np
import pytest

from configs import small
from grokjax.errors import UserError
from grokjax.optim import OptimizerSpec
from grokjax.run.specs import SweepConfig
from grokjax.run.sweep import run_inputs, sweep_program


def train(cfg, hparams=None):
    keys, hp = run_inputs(cfg)
    state, trace, _ = jax.jit(sweep_program(cfg))(keys, hp if hparams is None else hparams)
    return jax.tree.map(np.asarray, (state.params, trace))


def test_a_filter_with_lambda_zero_trains_like_the_optimizer_alone():
    """The same updates; a different compiled program, so equal up to float32 rounding."""
    plain = small(epochs=10, log_every=5, n_seeds=2)
    params, trace = train(plain)
    for spec in (OptimizerSpec(filter="ema", filter_lambda=0.0), OptimizerSpec(filter="ma", filter_window=3,
                                                                                filter_lambda=0.0)):
        got, got_trace = train(dataclasses.replace(plain, optimizer=spec))
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), got, params)
        np.testing.assert_allclose(got_trace.train_loss, trace.train_loss, rtol=1e-5)


def test_a_lambda_grid_is_one_program_and_each_run_matches_its_own_config():
    cfg = small(epochs=10, log_every=5, n_seeds=2, kind="adam")
    cfg = dataclasses.replace(cfg, optimizer=OptimizerSpec(filter="ema", filter_lambda=2.0, ortho=True))
    keys, hp = run_inputs(cfg)
    assert set(hp) == {"lr", "weight_decay", "filter_alpha", "filter_lambda"} and hp["filter_lambda"].shape == (2,)
    grid = {**hp, "filter_lambda": np.array([2.0, 5.0], np.float32)}
    both, _ = train(cfg, grid)
    alone, _ = train(dataclasses.replace(cfg, optimizer=dataclasses.replace(cfg.optimizer, filter_lambda=5.0)))
    np.testing.assert_allclose(both["w_unembed"][1], alone["w_unembed"][1], rtol=1e-5, atol=1e-6)
    assert not np.allclose(both["w_unembed"][0], alone["w_unembed"][0])


def test_stablemax_trains_and_its_float64_form_needs_x64():
    cfg = dataclasses.replace(small(epochs=10, log_every=5, n_seeds=2), loss="stablemax")
    params, trace = train(cfg)
    assert np.isfinite(trace.train_loss).all()
    with pytest.raises(UserError, match="64-bit"):
        train(dataclasses.replace(cfg, loss="stablemax64"))
    with pytest.raises(UserError, match="Unknown loss"):
        dataclasses.replace(cfg, loss="hinge")


def test_old_configs_without_the_new_fields_read_back_unchanged():
    saved = SweepConfig().to_dict()
    for field in ("filter", "filter_alpha", "filter_lambda", "filter_window", "ortho"):
        saved["optimizer"].pop(field)
    saved.pop("loss")
    assert SweepConfig.from_dict(saved) == SweepConfig()
    assert set(SweepConfig().hparams()) == {"lr", "weight_decay"}
