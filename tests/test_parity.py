"""Concealed parity: labels depend on the k hidden bits only (flip a spurious bit, the label stays; flip a hidden one,
it flips), strings are distinct and reproducible, bad specs are one sentence; the ReLU MLP against numpy, and drawn
for a narrower width inside padded inputs; and the study end to end on a tiny setting: one sweep over n x seeds
whose runs are those of each n alone (the same accuracies, the rest to float32 rounding), fits (the CLI's refusals, and rerunning does nothing), the
gathered collection against the sweep's own fits, the validation accuracy against a numpy forward pass, figures
drawn without jax."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from cli_runner import run_main
from grokjax.errors import UserError
from grokjax.models import ReluMLPSpec
from grokjax.optim import OptimizerSpec
from grokjax.problems import PROBLEMS, ConcealedParityProblem
from grokjax.problems.parity import parity_labels
from grokjax.run.specs import SweepConfig
from grokjax.run.storage import load_params, read_arrays
from grokjax.run.sweep import read_sweep_config, run_inputs, sweep_program
from grokjax.train import make_trainer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))
import concealed_parity  # noqa: E402
import fit_curves  # noqa: E402


@pytest.mark.parametrize("n_bits", [8, 40])  # drawn exactly without replacement, and bit by bit
def test_labels_depend_only_on_the_hidden_bits(n_bits):
    problem = ConcealedParityProblem(n_bits=n_bits, k=3, n_train=60, n_val=40, data_seed=5)
    data = problem.build()
    bits = (data.inputs > 0).astype(np.uint8)
    assert set(np.unique(data.inputs)) == {-1.0, 1.0} and data.inputs.dtype == np.float32
    np.testing.assert_array_equal(bits, data.arrays["bits"])
    xor = np.bitwise_xor.reduce(bits[:, :3], axis=1)  # the label, computed another way
    np.testing.assert_array_equal(data.eval_labels[0], xor)
    np.testing.assert_array_equal(data.train_labels, xor[:60])
    for j in range(n_bits):
        flipped = bits.copy()
        flipped[:, j] ^= 1
        same = parity_labels(flipped, 3) == parity_labels(bits, 3)
        assert same.all() if j >= 3 else not same.any(), j
    assert len(np.unique(bits, axis=0)) == 100  # distinct strings: no validation string is a training one
    assert 0.3 < np.mean(xor) < 0.7


def test_strings_are_reproducible_and_zero_one_bits_are_an_option():
    a, b = ConcealedParityProblem(n_bits=10, n_train=30, n_val=10).build(), ConcealedParityProblem(
        n_bits=10, n_train=30, n_val=10).build()
    np.testing.assert_array_equal(a.inputs, b.inputs)
    c = ConcealedParityProblem(n_bits=10, n_train=30, n_val=10, data_seed=1).build()
    assert not np.array_equal(a.inputs, c.inputs)
    z = ConcealedParityProblem(n_bits=10, n_train=30, n_val=10, values="01").build()
    np.testing.assert_array_equal(z.inputs, (a.inputs + 1) / 2)
    assert a.n_train == 30 and a.n_points == 40 and a.n_classes == 2 and PROBLEMS["parity"] is ConcealedParityProblem


@pytest.mark.parametrize("fields, words", [({"k": 5, "n_bits": 4}, "at least 5 bits"),
                                           ({"n_bits": 3, "n_train": 6, "n_val": 3}, "do not exist"),
                                           ({"values": "bool"}, "Unknown bit values"),
                                           ({"n_train": 0}, "positive integer")])
def test_bad_specs_are_one_sentence(fields, words):
    with pytest.raises(UserError, match=words):
        ConcealedParityProblem(**fields)


def test_the_relu_mlp_is_a_numpy_mlp_with_linear_init():
    data = ConcealedParityProblem(n_bits=12, n_train=20, n_val=5).build()
    model = ReluMLPSpec(hidden_dim=64).build(data)
    params = jax.tree.map(np.asarray, jax.jit(model.init)(jax.random.PRNGKey(0)))
    assert {k: v.shape for k, v in params.items()} == {"w_hidden_1": (12, 64), "b_hidden_1": (64,),
                                                       "w_out": (64, 2), "b_out": (2,)}
    for name, fan_in in (("w_hidden_1", 12), ("b_hidden_1", 12), ("w_out", 64), ("b_out", 64)):
        top = np.abs(params[name]).max()
        assert top <= 1 / np.sqrt(fan_in) and (params[name].size < 64 or top > 0.9 / np.sqrt(fan_in)), name
    x = data.inputs.astype(np.float64)
    expected = np.maximum(x @ params["w_hidden_1"] + params["b_hidden_1"], 0) @ params["w_out"] + params["b_out"]
    np.testing.assert_allclose(np.asarray(model.apply(params, data.columns())), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(UserError, match="real-valued inputs"):
        from grokjax.problems import GroupsProblem
        ReluMLPSpec().build(GroupsProblem().build())


def test_the_relu_mlp_drawn_for_a_narrower_width_is_that_network_padded_with_zeros():
    """Inside 12 padded inputs, the network of the first 7 draws the numbers the 7-input network draws (each entry
    from its own position), with the bound 1/sqrt(7), and zero weights on the padding."""
    wide, narrow = (ReluMLPSpec(hidden_dim=16).build(ConcealedParityProblem(n_bits=n, n_train=20, n_val=5).build())
                    for n in (12, 7))
    key = jax.random.PRNGKey(4)
    padded = jax.jit(wide.init_width)(key, np.int32(7))
    own = jax.jit(narrow.init)(key)
    for name, value in own.items():
        got = np.asarray(padded[name])
        np.testing.assert_array_equal(got[:7] if name == "w_hidden_1" else got, np.asarray(value), err_msg=name)
    assert not np.asarray(padded["w_hidden_1"])[7:].any()
    full = jax.jit(wide.init_width)(key, np.int32(12))
    for name, value in jax.jit(wide.init)(key).items():
        np.testing.assert_array_equal(np.asarray(full[name]), np.asarray(value), err_msg=name)


def test_several_numbers_of_bits_are_each_problem_alone_padded():
    several = ConcealedParityProblem(n_bits=(9, 5), k=2, n_train=20, n_val=8).build()
    assert several.variants.names == ("parity of 2 in 9 bits", "parity of 2 in 5 bits")
    np.testing.assert_array_equal(several.variants.input_width, [9, 5])
    for v, n in enumerate((9, 5)):
        alone = ConcealedParityProblem(n_bits=n, k=2, n_train=20, n_val=8).build()
        np.testing.assert_array_equal(several.variants.inputs[v, :, :n], alone.inputs)
        assert not several.variants.inputs[v, :, n:].any()
        np.testing.assert_array_equal(several.variants.eval_labels[v], alone.eval_labels)
        np.testing.assert_array_equal(several.variants.train_labels[v], alone.train_labels)
    assert several.variants.train_mask.all() and ConcealedParityProblem(n_bits=25).n_variants is None
    with pytest.raises(UserError, match="each number of bits once"):
        ConcealedParityProblem(n_bits=(9, 9), n_train=20, n_val=8)
    with pytest.raises(UserError, match="at least 3 bits"):
        ConcealedParityProblem(n_bits=(9, 2), n_train=2, n_val=1)
    cfg = SweepConfig(problem=ConcealedParityProblem(n_bits=(9, 5), k=2, n_train=20, n_val=8),
                      model=ReluMLPSpec(hidden_dim=8), optimizer=OptimizerSpec(eps=0.0), n_seeds=1)
    with pytest.raises(UserError, match="epsilon 0"):  # 0 / 0 on the padding's weights
        make_trainer(cfg.data(), cfg)


TINY = ["--n-bits", "6", "7", "--seeds", "2", "--k", "2", "--n-train", "40", "--n-val", "24", "--hidden-dim", "32",
        "--epochs", "40", "--log-every", "2", "--batch-size", "8", "--lr", "0.1", "--no-progress"]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("parity") / "study"
    concealed_parity.main(["--out", str(out), *TINY])
    return out


def test_the_study_trains_fits_and_gathers_every_n(study, capsys):
    info = json.loads((study / "sharpness.json").read_text())
    gathered = read_arrays(study / "sharpness.npz")
    assert info["pair"] == "heldout" and [r["value"] for r in info["per_axis"]] == [6, 7]
    np.testing.assert_array_equal(gathered["axis"], [6, 6, 7, 7])
    root = study / "sweep"
    cfg = read_sweep_config(root)
    assert cfg.problem == ConcealedParityProblem(n_bits=(6, 7), k=2, n_train=40, n_val=24)
    assert cfg.model == ReluMLPSpec(hidden_dim=32) and cfg.optimizer.kind == "sgd"
    assert cfg.schedule.batch_size == 8 and cfg.n_seeds == 2 and cfg.n_runs == 4
    fits = read_arrays(root / "fits.npz")
    assert list(fits["curves"]) == ["train", "heldout", "set parity of 2 bits"]
    p = list(fits["pairs"]).index("heldout")
    np.testing.assert_array_equal(gathered["relative_gap"], fits["relative_gap"][:, p])
    np.testing.assert_array_equal(gathered["t_star_test"], fits["t_star"][:, 1])
    np.testing.assert_array_equal(fits["chance"], [0.5, 0.5, 0.5])
    params = {k: np.asarray(v, np.float64) for k, v in load_params(root / "params").items()}
    traces = read_arrays(root / "traces.npz")
    for v, n in enumerate((6, 7)):
        runs = slice(2 * v, 2 * v + 2)
        data = ConcealedParityProblem(n_bits=n, k=2, n_train=40, n_val=24).build()
        # the validation accuracy saved by the sweep is that of the final parameters on the strings not trained on
        x = data.inputs[40:].astype(np.float64)
        w = params["w_hidden_1"][runs]
        assert not w[:, n:].any()  # the padding's weights stay zero
        logits = np.maximum(x[None] @ w[:, :n] + params["b_hidden_1"][runs, None], 0) @ params["w_out"][runs]
        predicted = np.argmax(logits + params["b_out"][runs, None], -1)
        np.testing.assert_allclose(traces["heldout_acc"][runs, -1], np.mean(predicted == data.eval_labels[0, 40:], 1),
                                   atol=1e-6)
    # each n's runs are those of a sweep of that n alone, padded (n = 6) or not: per-run inputs make XLA's matmuls
    # round differently in the last bit, so the losses and weights agree to float32 rounding, the accuracies exactly
    for v, n in enumerate((6, 7)):
        runs = slice(2 * v, 2 * v + 2)
        alone = dataclasses.replace(cfg, problem=ConcealedParityProblem(n_bits=n, k=2, n_train=40, n_val=24))
        state, trace, _ = jax.jit(sweep_program(alone))(*run_inputs(alone))
        for name, value in state.params.items():
            mine = params[name][runs, :n] if name == "w_hidden_1" else params[name][runs]
            np.testing.assert_allclose(mine, np.asarray(value), rtol=1e-5, atol=1e-6, err_msg=name)
        for name in ("train_acc", "heldout_acc", "group_acc"):
            np.testing.assert_array_equal(traces[name][runs], np.asarray(getattr(trace, name)), err_msg=name)
        for name in ("train_loss", "group_loss", "weight_norm", "margin"):
            np.testing.assert_allclose(traces[name][runs], np.asarray(getattr(trace, name)), rtol=1e-5, atol=1e-6,
                                       err_msg=name)
    capsys.readouterr()
    concealed_parity.main(["--out", str(study), *TINY, "--no-figures"])  # everything is there: nothing trains again
    printed = capsys.readouterr().out
    assert printed.count("already complete") == 1 and printed.count("already has its fits") == 1


def test_fit_curves_refuses_bad_input_and_other_settings(study, capsys):
    root = study / "sweep"
    code, _, err = run_main(fit_curves.main, [str(root), "--iterations", "5"], capsys)
    assert code == 2 and "other settings" in err and err.count("\n") == 1
    code, _, err = run_main(fit_curves.main, [str(root), "--tol", "2"], capsys)
    assert code == 2 and "tolerance" in err
    code, _, err = run_main(fit_curves.main, [str(study / "nothing")], capsys)
    assert code == 2 and "does not exist" in err
    before = (root / "fits.npz").read_bytes()
    code, out, _ = run_main(fit_curves.main, [str(root), "--overwrite"], capsys)
    assert code == 0 and "fitted 12 curves" in out and (root / "fits.npz").read_bytes() == before


def test_figures_of_the_study_and_of_a_sweep_are_drawn_without_jax(study, tmp_path):
    """The study's command drew its figures through experiments/figures.py's dispatch; a sweep's fits are drawn
    too, and the sharpness figures import no jax (in a fresh process; the package's __init__, which imports every
    figure module, is left out so that only these modules are checked)."""
    assert {p.name for p in (study / "figures").iterdir()} == {"gap_sharpness.png", "example_fits.png"}
    check = ("import sys, types, pathlib, grokjax; pkg = types.ModuleType('grokjax.figures'); "
             "pkg.__path__ = [str(pathlib.Path(grokjax.__file__).parent / 'figures')]; "
             "sys.modules['grokjax.figures'] = pkg; "
             "from grokjax.figures.sharpness import draw_sweep_sharpness; draw_sweep_sharpness(sys.argv[1], sys.argv[2]); "
             "assert 'jax' not in sys.modules, 'jax was imported'")
    done = subprocess.run([sys.executable, "-c", check, str(study / "sweep"), str(tmp_path)], capture_output=True,
                          text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert {p.name for p in tmp_path.iterdir()} == {"gap_sharpness.png", "example_fits.png"}
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in tmp_path.iterdir())
