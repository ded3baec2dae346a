"""Modular problems: labels against numpy for every named operation and a polynomial; division skips y = 0 and
uses the modular inverse; the "thread" split is the challenge generator's own (its code written out below);
expressions that try to run code are refused without running; the spec round-trips through config.json and a
tiny sweep trains on it and records the held-out (validation) accuracy."""

import ast
import builtins
import json
import random

import numpy as np
import pytest

from configs import small
from grokjax.errors import UserError
from grokjax.problems import PROBLEMS, ModularProblem
from grokjax.problems.expressions import evaluate, parse_expression
from grokjax.run.specs import read_config
from grokjax.run.storage import read_arrays
from grokjax.run.sweep import read_sweep_config, run_sweep

P = 13


def table(p=P):
    x, y = np.divmod(np.arange(p * p), p)
    return x, y


@pytest.mark.parametrize("op, direct", [
    ("+", lambda x, y: (x + y) % P),
    ("-", lambda x, y: (x - y) % P),
    ("*", lambda x, y: x * y % P),
    ("x**3 + x*y**2 + y", lambda x, y: (x**3 + x * y**2 + y) % P),
    ("-(x - 2*y)**2 + 5 - y*x", lambda x, y: (-(x - 2 * y) ** 2 + 5 - y * x) % P),
])
def test_labels_match_numpy(op, direct):
    data = ModularProblem(p=P, op=op, fraction=0.3, data_seed=4).build()
    x, y = table()
    assert (data.inputs == np.stack([x, y], 1)).all() and data.inputs.dtype == np.int32
    assert (data.eval_labels[0] == direct(x, y)).all() and data.eval_labels.dtype == np.int32
    assert data.vocab == data.n_classes == P and len(data.eval_names) == 1
    assert (np.diff(data.train_idx) > 0).all() and data.n_train == round(0.3 * P * P)
    assert (data.train_labels == data.eval_labels[0, data.train_idx]).all()


def test_division_skips_zero_and_uses_the_inverse():
    data = ModularProblem(p=P, op="/", fraction=1.0).build()
    x, y = data.inputs.T
    assert data.n_points == P * (P - 1) and (y != 0).all() and data.n_train == data.n_points
    inverse = {b: next(c for c in range(1, P) if b * c % P == 1) for b in range(1, P)}
    assert (data.eval_labels[0] == [a * inverse[b] % P for a, b in zip(x, y)]).all()
    assert (data.eval_labels[0] * y % P == x).all()
    assert data.eval_names == ("x/y mod 13",)


def test_powers_reduce_without_overflow():
    p = 46337  # prime, the largest p allows: products up to p**2 ~ 2**31
    x = np.array([p - 1, 12345, 0, 1])
    values, defined = evaluate(parse_expression("x**1000003 + x*x*x*x - 7"), x, x, p)
    assert values.tolist() == [(pow(int(v), 1000003, p) + int(v) ** 4 - 7) % p for v in x] and defined.all()


def generate_mod97_dataset(split=0.5):
    """The challenge's generator (discourse.numenta.org/t/the-grokking-challenge/10688) with its seed and shuffle."""
    data = []
    for i in range(97):
        for j in range(97):
            data.append((i, j, (i + j) % 97))
    random.seed(0)
    random.shuffle(data)
    i = int(len(data) * split)
    return data[:i], data[i:]


@pytest.mark.parametrize("split", [0.5, 0.3])
def test_thread_split_is_the_challenge_generators(split):
    state = random.getstate()
    try:
        train, val = generate_mod97_dataset(split)
    finally:
        random.setstate(state)
    data = ModularProblem(fraction=split, split="thread").build()
    assert random.getstate() == state  # building the split leaves the global generator alone
    assert data.train_idx.tolist() == sorted(i * 97 + j for i, j, _ in train)
    ours_train = {(int(a), int(b), int(c)) for (a, b), c in zip(data.inputs[data.train_idx], data.train_labels)}
    assert ours_train == set(train) and data.n_train == len(train) == int(9409 * split)
    val_rows = np.setdiff1d(np.arange(data.n_points), data.train_idx)
    ours_val = {(int(a), int(b), int(c)) for (a, b), c in zip(data.inputs[val_rows], data.eval_labels[0, val_rows])}
    assert ours_val == set(val) and len(val) + len(train) == 9409


def test_random_split_depends_on_the_data_seed_only():
    a, b, c = (ModularProblem(p=P, data_seed=s).build() for s in (1, 1, 2))
    assert (a.train_idx == b.train_idx).all() and not np.array_equal(a.train_idx, c.train_idx)


@pytest.mark.parametrize("source", [
    "__import__('os')", "__import__('pathlib').Path('pwned').touch()", "x.__class__", "(lambda: 1)()",
    "open('pwned', 'w')", "9**9**9", "x**-1", "x**(10**10)", "x**1.5", "'x'", "x if y else 1", "[x]", "x % y",
    "x // y", "x == y", "z", "True", "1.0", "x; y", "import os", "x @ y", "~x", "x" + "+x" * 300,
])
def test_injection_is_refused_without_running(source, monkeypatch, tmp_path):
    def forbidden(*args, **kwargs):
        raise AssertionError("an expression reached eval, exec or open")

    def syntax_tree_only(source, filename, mode, flags=0, *args, **kwargs):  # what ast.parse calls
        assert flags & ast.PyCF_ONLY_AST, "an expression was compiled to code"
        return compile(source, filename, mode, flags, *args, **kwargs)

    monkeypatch.chdir(tmp_path)
    with monkeypatch.context() as patched, pytest.raises(UserError) as e:
        for name in ("eval", "exec", "open"):
            patched.setattr(builtins, name, forbidden)
        patched.setattr(builtins, "compile", syntax_tree_only)
        ModularProblem(op=source)
    message = str(e.value)
    assert "\n" not in message and message.endswith(".")
    assert not list(tmp_path.iterdir())  # nothing was written


@pytest.mark.parametrize("fields, words", [
    ({"p": 1}, "modulus"), ({"p": 97.0}, "modulus"), ({"p": 10**6}, "modulus"), ({"p": 12, "op": "/"}, "prime"),
    ({"p": 15, "op": "x/(y+1)"}, "prime"), ({"fraction": 0}, "fraction"), ({"fraction": 1.5}, "fraction"),
    ({"split": "half"}, "split"), ({"data_seed": -1}, "seed"), ({"op": "%"}, "expression"), ({"op": 3}, "string"),
    ({"p": 2, "fraction": 0.1}, "empty"), ({"op": "x/(y - y)"}, "zero"),
])
def test_bad_specs_are_one_sentence(fields, words):
    with pytest.raises(UserError) as e:
        ModularProblem(**fields).build()
    assert words in str(e.value) and "\n" not in str(e.value)


def test_round_trips_through_the_config_schema():
    cfg = small(problem=ModularProblem(p=11, op="x**3 + x*y**2 + y", fraction=0.7, split="thread", data_seed=3))
    assert PROBLEMS["modular"] is ModularProblem
    saved = json.loads(json.dumps({"schema": 2, "sweep": cfg.to_dict(), "task": {}, "environment": {}}))
    assert saved["sweep"]["problem"]["kind"] == "modular"
    assert read_config(saved) == cfg


def test_tiny_sweep_records_the_validation_accuracy(tmp_path):
    cfg = small(problem=ModularProblem(p=7, op="+", fraction=0.5), n_seeds=2)
    run_sweep(cfg, tmp_path, workers=1, progress=False, log=lambda *a: None, cache_dir=None)
    assert read_sweep_config(tmp_path).problem == cfg.problem
    traces = read_arrays(tmp_path / "traces.npz")
    held = traces["heldout_acc"]
    assert held.shape[0] == 2 and np.isfinite(held).all() and ((0 <= held) & (held <= 1)).all()
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["task"]["group_names"] == ["x+y mod 7"] and config["task"]["n_train"] == 24
