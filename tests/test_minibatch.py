"""Minibatches, step schedules and warmup: SGD updates against numpy replays of the documented data order
(a fresh permutation `fold_in(fold_in(run key, ORDER_TAG), epoch)` every epoch, the last batch averaged over its
real points), a batch of the whole training set against the full-batch step, and sweep-width independence.
"""

import dataclasses

import jax
import numpy as np
import pytest

from configs import small
from grokjax.errors import UserError
from grokjax.run.storage import load_params, read_arrays
from grokjax.run.sweep import run_sweep
from grokjax.train import ORDER_TAG, Schedule, make_trainer
from test_train import DATA, TASK, numpy_grads

KEY = jax.random.PRNGKey(3)
B = 5  # 24 training points: batches of 5, 5, 5, 5 and 4


def sgd(lr=0.1, **kw):
    return small(kind="sgd", lr=lr, weight_decay=0.0, **kw)


def as64(tree):
    return jax.tree.map(lambda x: np.asarray(x, np.float64), tree)


def replay(p, n_steps, lr=0.1, batch=B, last_mean_over=None):
    """`n_steps` SGD updates in numpy, epoch e's batches cut from the permutation drawn with key
    fold_in(order key, e); `last_mean_over` replaces the last batch's divisor (to show that it matters)."""
    n = DATA.n_train
    per_epoch, order_key = -(-n // batch), jax.random.fold_in(KEY, ORDER_TAG)
    seen = []
    for t in range(n_steps):
        epoch, within = divmod(t, per_epoch)
        order = np.asarray(jax.random.permutation(jax.random.fold_in(order_key, epoch), n))
        idx = order[within * batch:(within + 1) * batch]
        seen.append(idx)
        g = numpy_grads(p, TASK.train_pairs[idx], TASK.train_labels[idx])  # the mean over the batch's points
        if last_mean_over is not None and len(idx) < batch:
            g = {k: v * len(idx) / last_mean_over for k, v in g.items()}
        p = {k: p[k] - lr * g[k] for k in p}
    return p, seen


def assert_close(got, want, rtol=1e-5, atol=1e-6):
    for k in want:
        np.testing.assert_allclose(np.asarray(got[k]), want[k], rtol=rtol, atol=atol, err_msg=k)


def test_one_batch_of_the_whole_training_set_is_the_full_batch_step():
    """SGD: Adam's first step, about lr * sign(g), would blow a near-zero gradient's rounding up to ~1e-5."""
    states = []
    for batch in (0, DATA.n_train):
        cfg = sgd(0.5, epochs=1, log_every=1, batch_size=batch)
        trainer = make_trainer(DATA, cfg)
        start = trainer.init(KEY)
        states.append(jax.jit(trainer.advance, static_argnums=2)(start, cfg.hparams(), 1)[0])
    assert [int(s.epoch) for s in states] == [1, 1]
    assert_close(states[1].params, as64(states[0].params), rtol=1e-5, atol=1e-7)  # only the summation order differs
    assert not np.allclose(states[1].params["w_left"], start.params["w_left"], rtol=1e-3)  # a real step was taken


def test_an_epoch_of_minibatches_uses_every_point_once_and_averages_the_last_batch_over_its_points():
    cfg = sgd(epochs=2, log_every=1, batch_size=B)
    trainer = make_trainer(DATA, cfg)
    state = trainer.init(KEY)
    p0 = as64(state.params)
    advance = jax.jit(trainer.advance, static_argnums=2)
    state, _ = advance(state, cfg.hparams(), 1)
    assert int(state.epoch) == 5  # ceil(24 / 5) optimizer steps
    want, seen = replay(p0, 5)
    assert [len(s) for s in seen] == [5, 5, 5, 5, 4] and sorted(np.concatenate(seen)) == list(range(24))
    assert_close(state.params, want)
    wrong, _ = replay(p0, 5, last_mean_over=B)  # a last batch padded into a mean over 5 would be visible
    assert not np.allclose(np.asarray(state.params["b_unembed"]), wrong["b_unembed"], rtol=1e-4, atol=1e-6)
    state, _ = advance(state, cfg.hparams(), 1)  # the second epoch draws a fresh permutation
    assert int(state.epoch) == 10
    assert_close(state.params, replay(p0, 10)[0], rtol=1e-4, atol=1e-5)


def test_step_schedule_trains_exactly_that_many_optimizer_steps():
    cfg = dataclasses.replace(sgd(), schedule=Schedule(length=12, log_every=4, batch_size=B, unit="steps"))
    trainer = make_trainer(DATA, cfg)
    state, trace, _ = jax.jit(trainer.train)(KEY, cfg.hparams())
    assert int(state.epoch) == 12 and trace.train_loss.shape == (4,)  # time 0, then every 4 steps
    p0 = as64(trainer.init(KEY).params)
    assert_close(state.params, replay(p0, 12)[0], rtol=1e-4, atol=1e-5)  # 2 epochs and 2 steps into the third
    assert not np.allclose(np.asarray(state.params["w_left"]), replay(p0, 11)[0]["w_left"], rtol=1e-4, atol=1e-5)


def test_linear_warmup_scales_the_first_steps():
    w, lr = 3, 0.5
    cfg = dataclasses.replace(sgd(lr), schedule=Schedule(length=5, log_every=1, warmup_steps=w))
    trainer = make_trainer(DATA, cfg)
    state, step = trainer.init(KEY), jax.jit(trainer.step)
    p = as64(state.params)
    for t in range(5):
        state = step(state, cfg.hparams())
        new = as64(state.params)
        g = numpy_grads(p, TASK.train_pairs, TASK.train_labels)
        factor = min(1.0, t / w)  # 0, 1/3, 2/3, then the full learning rate
        for k in p:
            np.testing.assert_allclose(new[k] - p[k], -lr * factor * g[k], rtol=2e-3, atol=1e-7,
                                       err_msg=f"step {t}, {k}")
        if t == 1:
            ratio = np.linalg.norm(new["w_unembed"] - p["w_unembed"]) / np.linalg.norm(lr * g["w_unembed"])
            assert abs(ratio - 1 / w) < 1e-4
        p = new


def test_a_runs_minibatch_results_do_not_depend_on_the_runs_beside_it(tmp_path):
    quiet = dict(workers=1, progress=False, log=lambda *_: None, cache_dir=None)
    for n in (3, 6):
        run_sweep(small(epochs=4, log_every=2, batch_size=B, n_seeds=n, seeds_per_call=4), tmp_path / str(n), **quiet)
    a, b = ({**read_arrays(tmp_path / str(n) / "traces.npz"), **read_arrays(tmp_path / str(n) / "seeds.npz"),
             **{f"params/{k}": v for k, v in load_params(tmp_path / str(n) / "params").items()}} for n in (3, 6))
    assert a.keys() == b.keys()
    for k in a:
        rows = slice(None) if k == "epochs" else slice(3)
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k][rows], b[k][rows], equal_nan=a[k].dtype.kind == "f"), k
    assert not np.array_equal(b["params/w_left"][0], b["params/w_left"][1])


@pytest.mark.parametrize("kw, fragment", [
    (dict(length=12, log_every=4, unit="steps"), "needs a batch size"),
    (dict(length=12, log_every=4, batch_size=-1), "non-negative"),
    (dict(length=12, log_every=4, warmup_steps=-2), "non-negative"),
    (dict(length=12, log_every=4, batch_size=5, unit="samples"), "Unknown schedule unit 'samples'"),
])
def test_bad_schedules_are_refused(kw, fragment):
    with pytest.raises(UserError, match=fragment):
        Schedule(**kw)
