"""Transplant: fates from hand-built traces, a transplant onto the run's own training set changing nothing, and
the experiment end to end with its refusals."""

import dataclasses

import jax
import numpy as np

from cli_runner import run_main
from configs import small
from grokjax.analysis.transplant import classify, fate_counts
from grokjax.run.states import continue_runs, load_states
from grokjax.run.sweep import run_inputs, run_sweep
from grokjax.run.transplant import source_config


def test_fates_from_traces():
    before = np.array([1.0, 1.0, 1.0, 0.5, 1.0, 1.0])
    source = np.array([[1.0, 1.0, 1.0],   # stays
                       [1.0, 0.8, 0.9],   # ungrokks while the intersection is fitted
                       [0.9, 1.0, 1.0],   # ungrokks, then regroks
                       [0.2, 0.2, 0.2],   # never grokked its table
                       [0.8, 0.8, 1.0],   # below the threshold only while the intersection is not fitted: stays
                       [1.0, 1.0, 1.0]])  # diverged
    train = np.array([[1, 1, 1], [1, 1, 1], [1, 1, 1], [1, 1, 1], [0.5, 0.9, 1], [1, 1, 1]], float)
    f = classify(before, source, train, 0.999, np.array([True] * 5 + [False]))
    assert list(f.stays) == [True, False, False, False, True, False]
    assert list(f.ungrokked) == [False, True, True, False, False, False]
    assert list(f.regrokked) == [False, False, True, False, False, False]
    assert list(f.first_ungrok) == [-1, 1, 0, -1, -1, -1]
    assert fate_counts(f) == {"stays grokked": 2, "ungrokked": 2, "regrokked": 1, "not grokked before": 1,
                              "diverged": 1, "grokked before": 4}


def test_a_transplant_onto_the_runs_own_training_set_changes_nothing(tmp_path):
    """Continued on its own table with its optimizer state, a run is the run trained longer, bit for bit."""
    cfg = small(epochs=20, log_every=10, n_seeds=3, seeds_per_call=4)
    src = source_config(cfg, 0, 1.0, 20)
    run_sweep(src, tmp_path / "a", progress=False, workers=1, log=lambda *a: None, cache_dir=None)
    longer = dataclasses.replace(src, schedule=dataclasses.replace(src.schedule, length=40))
    run_sweep(longer, tmp_path / "b", progress=False, workers=1, log=lambda *a: None, cache_dir=None)
    final, trace = continue_runs(src, load_states(tmp_path / "a", src), run_inputs(src)[1], n_logs=2, workers=1)
    jax.tree.map(np.testing.assert_array_equal, final.params, load_states(tmp_path / "b", longer).params)
    assert np.array_equal(trace.group_acc, np.load(tmp_path / "b" / "traces.npz")["group_acc"][:, -2:])


def test_experiment_counts_both_directions_and_refuses_bad_input(tmp_path, capsys):
    from experiments.transplant import main

    tiny = ["--groups", "S(3)", "times(A(3),Z(2))", "--embed-dim", "4", "--hidden-dim", "4", "--epochs-before", "20",
            "--epochs", "20", "--log-every", "10", "--n-seeds", "3", "--workers", "1", "--no-progress",
            "--no-compile-cache"]
    code, out, err = run_main(main, tiny + ["--out", str(tmp_path / "t")], capsys)
    assert code == 0, err
    saved = np.load(tmp_path / "t" / "transplant.npz")
    assert list(saved["epochs"]) == [30, 40] and saved["0/group_acc"].shape == (3, 2, 2)
    assert "S(3) -> intersection" in out and "times(A(3),Z(2)) -> intersection" in out
    before = np.load(tmp_path / "t" / "source_1" / "traces.npz")["group_acc"][:, -1, 1]
    assert np.array_equal(saved["1/before_acc"], before)
    from grokjax.figures import draw

    assert draw(tmp_path / "t")[0][0].name == "transplant_curves.png"
    code, _, err = run_main(main, tiny + ["--out", str(tmp_path / "t")], capsys)
    assert code == 2 and "already exist" in err
    code, _, err = run_main(main, tiny[:1] + ["S(3)", "Z(6)", "D(3)"] + tiny[4:] + ["--out", str(tmp_path / "u")],
                            capsys)
    assert code == 2 and "two groups" in err and "Traceback" not in err
