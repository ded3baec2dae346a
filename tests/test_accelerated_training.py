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


def test_a_filter_grid_is_one_program_and_each_run_matches_its_own_config():
    cfg = small(epochs=10, log_every=5, n_seeds=2, kind="adam")
    cfg = dataclasses.replace(cfg, optimizer=OptimizerSpec(filter="ema", ortho=True), filter_alpha_grid=(0.9, 0.98),
                              filter_lambda_grid=(2.0, 5.0))
    keys, hp = run_inputs(cfg)
    assert cfg.n_runs == 8 and set(hp) == {"lr", "weight_decay", "filter_alpha", "filter_lambda"}
    np.testing.assert_array_equal(hp["filter_alpha"], np.float32([0.9] * 4 + [0.98] * 4))  # alpha varies slowest
    np.testing.assert_array_equal(hp["filter_lambda"], np.float32([2, 2, 5, 5] * 2))
    both, _ = train(cfg)
    point = dataclasses.replace(cfg.optimizer, filter_alpha=0.98, filter_lambda=5.0)
    alone, _ = train(dataclasses.replace(cfg, optimizer=point, filter_alpha_grid=(), filter_lambda_grid=()))
    np.testing.assert_allclose(both["w_unembed"][6:], alone["w_unembed"], rtol=1e-5, atol=1e-6)
    assert not np.allclose(both["w_unembed"][4:6], alone["w_unembed"])


def test_filter_grids_need_their_filter():
    cfg = small(epochs=10, log_every=5, n_seeds=2)
    with pytest.raises(UserError, match="needs a gradient filter"):
        dataclasses.replace(cfg, filter_lambda_grid=(1.0, 2.0))
    with pytest.raises(UserError, match="Only the EMA filter"):
        dataclasses.replace(cfg, optimizer=OptimizerSpec(filter="ma"), filter_alpha_grid=(0.9, 0.98))
    with pytest.raises(UserError, match="alpha must lie"):
        dataclasses.replace(cfg, optimizer=OptimizerSpec(filter="ema"), filter_alpha_grid=(0.9, 1.5))


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
