"""Training: updates against a hand-computed backward pass and optimiser, metrics against numpy."""

import jax
import jax.numpy as jnp
import numpy as np

from configs import S3_VS_A3Z2, small
from grokjax.problems import GroupsProblem
from grokjax.train import make_trainer

PROBLEM = GroupsProblem(S3_VS_A3Z2)
TASK, DATA = PROBLEM.task_of(), PROBLEM.build()
N = TASK.n


def numpy_grads(p, pairs, labels):
    """Mean cross-entropy gradient of MLP2 by hand, in float64."""
    a, b = pairs // N, pairs % N
    pre = p["embed_left"][a] @ p["w_left"] + p["embed_right"][b] @ p["w_right"]
    hidden = np.maximum(pre, 0)
    logits = hidden @ p["w_unembed"] + p["b_unembed"]
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    dlogits = (probs - np.eye(N)[labels]) / len(labels)
    dpre = (dlogits @ p["w_unembed"].T) * (pre > 0)
    d_el, d_er = np.zeros_like(p["embed_left"]), np.zeros_like(p["embed_right"])
    np.add.at(d_el, a, dpre @ p["w_left"].T)
    np.add.at(d_er, b, dpre @ p["w_right"].T)
    return {"embed_left": d_el, "embed_right": d_er,
            "w_left": p["embed_left"][a].T @ dpre, "w_right": p["embed_right"][b].T @ dpre,
            "w_unembed": hidden.T @ dlogits, "b_unembed": dlogits.sum(0)}


def first_steps(cfg, n_steps):
    trainer = make_trainer(DATA, cfg)
    state = trainer.init(jax.random.PRNGKey(3))
    p0 = jax.tree.map(lambda x: np.asarray(x, np.float64), state.params)
    steps = [state]
    for _ in range(n_steps):
        state, _ = trainer.advance(state, cfg.hparams(), 1)
        steps.append(state)
    return p0, [jax.tree.map(np.asarray, s.params) for s in steps[1:]]


def test_two_adam_steps_match_pytorch_adam_with_l2_on_weights():
    cfg = small(epochs=2, log_every=1, weight_decay=0.05)
    p, got = first_steps(cfg, 2)
    o = cfg.optimizer
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v = {k: np.zeros_like(x) for k, x in p.items()}
    for t in (1, 2):
        g = numpy_grads(p, TASK.train_pairs, TASK.train_labels)
        for k in p:
            if k != "b_unembed":
                g[k] = g[k] + o.weight_decay * p[k]  # L2 added to the gradient, weights only
            m[k] = o.beta1 * m[k] + (1 - o.beta1) * g[k]
            v[k] = o.beta2 * v[k] + (1 - o.beta2) * g[k] ** 2
            m_hat, v_hat = m[k] / (1 - o.beta1**t), v[k] / (1 - o.beta2**t)
            p[k] = p[k] - o.lr * m_hat / (np.sqrt(v_hat) + o.eps)
        for k in p:
            np.testing.assert_allclose(got[t - 1][k], p[k], rtol=2e-5, atol=2e-6, err_msg=f"step {t}, {k}")


def test_sgd_step_decays_weights_but_not_the_bias():
    cfg = small(epochs=1, log_every=1, kind="sgd", lr=0.5, weight_decay=0.1)
    p, (got,) = first_steps(cfg, 1)
    g = numpy_grads(p, TASK.train_pairs, TASK.train_labels)
    for k in p:
        decay = 0 if k == "b_unembed" else 0.1 * p[k]
        np.testing.assert_allclose(got[k], p[k] - 0.5 * (g[k] + decay), rtol=1e-5, atol=1e-6)


def test_metrics_match_numpy():
    cfg = small(epochs=1, log_every=1)
    trainer = make_trainer(DATA, cfg)
    params = trainer.init(jax.random.PRNGKey(5)).params
    got = trainer.metrics(params)
    p = jax.tree.map(lambda x: np.asarray(x, np.float64), params)
    a, b = np.divmod(np.arange(N * N), N)
    logits = np.maximum(p["embed_left"][a] @ p["w_left"] + p["embed_right"][b] @ p["w_right"], 0) @ p["w_unembed"] + p["b_unembed"]
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    for g, group in enumerate(TASK.groups):
        y = group.table.reshape(-1)
        np.testing.assert_allclose(got.group_loss[g], -logp[np.arange(N * N), y].mean(), rtol=1e-5)
        assert np.isclose(got.group_acc[g], (logits.argmax(1) == y).mean())
    tl, ty = logits[TASK.train_pairs], TASK.train_labels
    np.testing.assert_allclose(got.train_loss, -logp[TASK.train_pairs, ty].mean(), rtol=1e-5)
    assert np.isclose(got.train_acc, (tl.argmax(1) == ty).mean())
    others = np.where(np.eye(N, dtype=bool)[ty], -np.inf, tl).max(1)
    np.testing.assert_allclose(got.margin, (tl[np.arange(len(ty)), ty] - others).min(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got.mean_margin, (tl[np.arange(len(ty)), ty] - others).mean(), rtol=1e-4, atol=1e-5)


def test_fit_epoch_is_the_first_epoch_with_train_accuracy_one():
    cfg = small(embed_dim=16, hidden_dim=16, epochs=60, log_every=1)
    state, trace, _ = jax.jit(make_trainer(DATA, cfg).train)(jax.random.PRNGKey(0), cfg.hparams())
    acc = np.asarray(trace.train_acc)  # index e: after e updates
    assert acc[-1] == 1, "this small task is fitted within 60 epochs"
    assert int(state.fit_epoch) == np.flatnonzero(acc == 1)[0]


def test_new_hyperparameter_values_do_not_recompile():
    cfg = small(epochs=4, log_every=2)
    run = jax.jit(make_trainer(DATA, cfg).train)
    a = run(jax.random.PRNGKey(0), cfg.hparams())
    b = run(jax.random.PRNGKey(0), {"lr": jnp.float32(0.1), "weight_decay": jnp.float32(0.0)})
    assert run._cache_size() == 1
    assert not np.allclose(a[0].params["w_left"], b[0].params["w_left"])


def test_held_out_and_disagreement_accuracies_match_numpy():
    """On 60% of the S3 vs A3xZ2 intersection: accuracy on the unseen 40% of it and, per group, on the points where
    the groups disagree; the full intersection has no held-out points (NaN)."""
    cfg = small(problem=GroupsProblem(S3_VS_A3Z2, "intersection_fraction", 0.6))
    data = cfg.problem.build()
    task = cfg.problem.task_of()
    params = make_trainer(data, cfg).init(jax.random.PRNGKey(2)).params
    got = make_trainer(data, cfg).metrics(params)
    p = jax.tree.map(lambda x: np.asarray(x, np.float64), params)
    a, b = np.divmod(np.arange(N * N), N)
    argmax = (np.maximum(p["embed_left"][a] @ p["w_left"] + p["embed_right"][b] @ p["w_right"], 0) @ p["w_unembed"]
              + p["b_unembed"]).argmax(1)
    tables = [g.table.reshape(-1) for g in task.groups]
    agree = tables[0] == tables[1]
    unseen = agree & ~np.isin(np.arange(N * N), task.train_pairs)
    assert 0 < unseen.sum() < agree.sum() and unseen.sum() == agree.sum() - len(task.train_pairs)
    assert np.isclose(got.heldout_acc, (argmax[unseen] == tables[0][unseen]).mean())
    for g in range(2):
        assert np.isclose(got.disagree_acc[g], (argmax[~agree] == tables[g][~agree]).mean())
    full = small()
    assert np.isnan(make_trainer(full.problem.build(), full).metrics(params).heldout_acc)
