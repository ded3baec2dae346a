"""The experiment's command line: bad input is one sentence and exit status 2, with nothing written.

A few cases run the script as a real subprocess (each imports JAX, ~3 s); the rest call
`run_cli(lambda: main(argv))` in-process, which is what the script's `__main__` does.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cli_runner import run_main
from grokjax.run.storage import PACKAGES

EXPERIMENT = Path(__file__).resolve().parents[1] / "experiments" / "sweep_intersection.py"
TINY = ["--epochs", "10", "--log-every", "5", "--n-seeds", "2", "--groups", "S(3)", "times(A(3),Z(2))", "--no-progress"]
# The smallest non-associative loop: a Latin square with identity 0, (1*1)*2 = 2 but 1*(1*2) = 4.
NON_ASSOCIATIVE = np.array([[0, 1, 2, 3, 4], [1, 0, 3, 4, 2], [2, 4, 0, 1, 3], [3, 2, 4, 0, 1], [4, 3, 1, 2, 0]])
SWAPPED_Z2 = np.array([[1, 0], [0, 1]])  # Z(2) with identity 1: differs from Z(2) at every pair


def load_experiment():
    spec = importlib.util.spec_from_file_location("sweep_intersection", EXPERIMENT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


experiment = load_experiment()


def run_subprocess(args, cwd):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, str(EXPERIMENT), *args], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=300)
    return result.returncode, result.stdout, result.stderr


def run_inprocess(argv, capsys):
    """Exit status (0 when main returns), stdout and stderr of the CLI run in this process."""
    return run_main(experiment.main, argv, capsys)


def snapshot(root: Path) -> dict:
    """Every file and folder under `root` with its bytes (None for folders)."""
    return {str(p.relative_to(root)): (None if p.is_dir() else p.read_bytes()) for p in sorted(root.rglob("*"))}


def assert_refused(code, out, err, fragment=None):
    """Exit 2 with exactly one non-empty line on stderr, the error sentence, and no traceback."""
    assert code == 2, (code, out, err)
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and lines[0].endswith("."), err
    if fragment is not None:
        assert fragment in lines[0], err
    assert "total" not in out  # no outcome table


def assert_usage_error(code, err):
    assert code == 2 and "usage:" in err and "Traceback" not in err


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A real tiny sweep run as a subprocess: (results directory, exit code, stdout, stderr)."""
    cwd = tmp_path_factory.mktemp("finished")
    code, out, err = run_subprocess([*TINY, "--out", "run"], cwd)
    return cwd / "run", code, out, err


@pytest.fixture
def results_copy(finished_run, tmp_path):
    """A private copy of the finished run, and its snapshot."""
    root = tmp_path / "results"
    shutil.copytree(finished_run[0], root)
    return root, snapshot(root)


# ------------------------------------------------------------------ a run that works


def test_tiny_run_succeeds(finished_run):
    root, code, out, err = finished_run
    assert code == 0, err
    assert "Traceback" not in err
    lines = out.splitlines()
    assert lines[-1].split() == ["total", "2"]
    for name in ("both", "S(3) only", "times(A(3),Z(2)) only", "neither"):
        assert any(line.startswith(name) for line in lines), out
    assert sorted(p.name for p in root.iterdir()) == sorted(
        ["config.json", "task.npz", "traces.npz", "seeds.npz", "outcome.json", "params", "opt_state", "run.json"])
    assert (root / "params").is_dir() and not (root / "chunks").exists()
    config = json.loads((root / "config.json").read_text())
    assert config["schema"] == 2
    problem, model, schedule = config["sweep"]["problem"], config["sweep"]["model"], config["sweep"]["schedule"]
    assert problem["kind"] == "groups" and problem["groups"] == ["S(3)", "times(A(3),Z(2))"]
    assert config["sweep"]["n_seeds"] == 2 and problem["task"] == "intersection"
    assert model == {"kind": "mlp2", "embed_dim": 32, "hidden_dim": 32, "unembed_bias": True}
    assert schedule["length"] == 10 and schedule["unit"] == "epochs" and schedule["log_every"] == 5
    assert config["task"] == {"n": 6, "n_train": 24, "group_names": ["S(3)", "times(A(3),Z(2))"]}
    packages = config["environment"]["packages"]
    assert set(packages) == set(PACKAGES)
    import jax
    import numpy
    assert packages["jax"] == jax.__version__ and packages["numpy"] == numpy.__version__
    outcome = json.loads((root / "outcome.json").read_text())
    assert outcome["n_seeds"] == 2 and sum(r["count"] for r in outcome["outcomes"]) == 2
    with np.load(root / "traces.npz") as traces:
        assert traces["epochs"].tolist() == [0, 5, 10]
        assert traces["group_acc"].shape == (2, 3, 2)
    with np.load(root / "seeds.npz") as seeds:
        assert seeds["grokked"].shape == (2, 2) and seeds["seed"].tolist() == [0, 1]
    run = json.loads((root / "run.json").read_text())
    assert run["runs_trained"] == 2 and run["device"].startswith("cpu")


def test_resume_of_a_finished_run_changes_nothing(results_copy, capsys):
    root, before = results_copy
    code, out, err = run_inprocess([*TINY, "--out", str(root), "--resume"], capsys)
    assert code == 0 and "already complete" in out and "Traceback" not in err
    assert snapshot(root) == before


# ------------------------------------------------------------------ bad input, as real subprocesses


def test_code_injection_is_not_run(tmp_path):
    code, out, err = run_subprocess([*TINY, "--groups", "os.system('touch pwned')", "--out", "out"], tmp_path)
    assert_refused(code, out, err, "Unknown group 'os.system'")
    assert not (tmp_path / "pwned").exists() and list(tmp_path.iterdir()) == []


def test_non_group_table_file(tmp_path):
    np.save(tmp_path / "loop.npy", NON_ASSOCIATIVE)
    code, out, err = run_subprocess([*TINY, "--groups", "loop.npy", "--out", "out"], tmp_path)
    assert_refused(code, out, err, "is not associative")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loop.npy"]


def test_unwritable_output_directory(tmp_path):
    (tmp_path / "afile").write_text("not a directory")
    code, out, err = run_subprocess([*TINY, "--out", str(tmp_path / "afile" / "out")], tmp_path)
    assert_refused(code, out, err, "Cannot write to the output directory")
    assert (tmp_path / "afile").read_text() == "not a directory"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_existing_results_directory_is_not_touched(results_copy):
    root, before = results_copy
    code, out, err = run_subprocess([*TINY, "--out", str(root)], root.parent)
    assert_refused(code, out, err, "already exists; pass --resume to continue it or --overwrite to replace it")
    assert snapshot(root) == before


# ------------------------------------------------------------------ bad input, in-process


BAD_RUNS = [
    (["--groups", "Z("], "ends early"),
    (["--groups", "__import__('os')"], "Unknown group '__import__'"),
    (["--groups", "os.system('touch pwned')"], "Unknown group 'os.system'"),
    (["--groups", "eval(\"1\")"], "Unknown group 'eval'"),
    (["--groups", "loop.npy"], "is not associative"),
    (["--groups", "missing.npy"], "does not exist"),
    (["--groups", "S(4)", "Z(12)"], "different orders"),
    (["--groups", "Z(2)", "swapped.npy"], "The training set is empty"),
    (["--groups", "S(3)", "--task", "iid", "--fraction", "0.01"], "The training set is empty"),  # round(0.36) = 0
    (["--n-seeds", "0"], "number of seeds must be a positive integer, got 0"),
    (["--epochs", "0"], "The number of epochs must be a positive integer, got 0"),
    (["--epochs", "7"], "multiple of the log interval"),
    (["--embed-dim", "-1"], "Embed dim must be a positive integer, got -1"),
    (["--hidden-dim", "0"], "Hidden dim must be a positive integer, got 0"),
    (["--chunk-size", "0"], "chunk size must be a positive integer, got 0"),
    (["--lr", "0"], "learning rate must be positive"),
    (["--lr", "nan"], "must be finite numbers"),
    (["--lr", "1e-2", "-0.003"], "learning rate must be positive, got -0.003"),
    (["--weight-decay", "0", "-1"], "weight decay must be non-negative, got -1.0"),
    (["--keep-every", "7"], "checkpoint interval (7) must be a multiple of the log interval"),
    (["--workers", "-1"], "number of workers must be a non-negative integer (0: one per core), got -1"),
    (["--beta2", "1.0"], "betas and SGD momentum must lie in [0, 1)"),
    (["--weight-decay", "inf"], "must be finite numbers"),
    (["--seed", str(2**63)], "seed must be an integer in [0, 2**32)"),
    (["--seed", "-1"], "seed must be an integer in [0, 2**32)"),
    (["--grok-threshold", "1.5"], "grokking threshold"),
    (["--task", "intersection_fraction", "--fraction", "0"], "must be in (0, 1], got 0.0"),
    (["--task", "intersection_fraction", "--fraction", "1.5"], "must be in (0, 1], got 1.5"),
    (["--task", "iid", "--iid-group", "2"], "iid group index must be in 0..1, got 2"),
    (["--task", "intersection_plus", "--group-fractions", "0.5"], "needs one fraction per group (2), got 1"),
    (["--task", "intersection_plus", "--group-fractions", "0.9", "0.9"], "add up to more than"),
]


@pytest.mark.parametrize("extra, fragment", BAD_RUNS, ids=[" ".join(e) for e, _ in BAD_RUNS])
def test_bad_input_in_process(extra, fragment, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "loop.npy", NON_ASSOCIATIVE)
    np.save(tmp_path / "swapped.npy", SWAPPED_Z2)
    code, out, err = run_inprocess([*TINY, *extra, "--out", str(tmp_path / "out")], capsys)
    assert_refused(code, out, err, fragment)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loop.npy", "swapped.npy"]  # no out/, no pwned


@pytest.mark.parametrize("extra", [
    ["--task", "parity"],
    ["--n-seeds", "two"],
    ["--ci", "bayes"],
    ["--resume", "--overwrite"],
])
def test_argparse_errors(extra, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_inprocess([*TINY, *extra, "--out", str(tmp_path / "out")], capsys)
    assert_usage_error(code, err)
    assert list(tmp_path.iterdir()) == []


def test_resume_needs_out(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_inprocess([*TINY, "--resume"], capsys)
    assert_usage_error(code, err)
    assert "error: --resume needs --out" in err
    assert list(tmp_path.iterdir()) == []


def test_output_path_is_a_file(tmp_path, capsys):
    (tmp_path / "out").write_text("keep me")
    code, out, err = run_inprocess([*TINY, "--out", str(tmp_path / "out")], capsys)
    assert_refused(code, out, err, "exists and is not a directory")
    assert (tmp_path / "out").read_text() == "keep me"


@pytest.mark.parametrize("extra, fragment", [
    ([], "already exists"),
    (["--epochs", "0", "--overwrite"], "The number of epochs must be a positive integer"),
    (["--lr", "0.02", "--resume"], "its config differs in optimizer.lr."),
    (["--n-seeds", "3", "--resume"], "its config differs in n_seeds."),
])
def test_refused_runs_leave_existing_results_unchanged(results_copy, capsys, extra, fragment):
    root, before = results_copy
    code, out, err = run_inprocess([*TINY, *extra, "--out", str(root)], capsys)
    assert_refused(code, out, err, fragment)
    assert snapshot(root) == before


def test_resume_of_a_missing_directory(tmp_path, capsys):
    code, out, err = run_inprocess([*TINY, "--out", str(tmp_path / "nothing"), "--resume"], capsys)
    assert_refused(code, out, err, "nothing to resume")
    assert list(tmp_path.iterdir()) == []


def test_resume_of_a_directory_without_a_sweep(tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    code, out, err = run_inprocess([*TINY, "--out", str(tmp_path / "out"), "--resume"], capsys)
    assert_refused(code, out, err, "no readable config.json")
    assert snapshot(tmp_path / "out") == {"notes.txt": b"mine"}


def test_overwrite_refuses_a_directory_that_is_not_a_results_directory(tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "thesis.tex").write_text("precious")
    code, out, err = run_inprocess([*TINY, "--out", str(tmp_path / "out"), "--overwrite"], capsys)
    assert_refused(code, out, err, "it is not a grokjax results directory")
    assert snapshot(tmp_path / "out") == {"thesis.tex": b"precious"}


# ------------------------------------------------------------------ regressions: foreign config.json, huge seeds


def test_overwrite_refuses_a_directory_with_a_foreign_config_json(tmp_path, monkeypatch, capsys):
    import grokjax.run.sweep

    def stop(*args, **kwargs):  # stop right after the directory is prepared: no training needed to see the loss
        raise KeyboardInterrupt

    monkeypatch.setattr(grokjax.run.sweep, "_write_start", stop)
    out = tmp_path / "project"
    out.mkdir()
    (out / "config.json").write_text('{"name": "my-app"}')
    (out / "important.txt").write_text("precious")
    before = snapshot(out)
    code, _, err = run_inprocess([*TINY, "--out", str(out), "--overwrite"], capsys)
    assert snapshot(out) == before
    assert_refused(code, "", err, "not a grokjax results directory")


@pytest.mark.parametrize("text", ['{"name": "my-app"}', "garbage"])
def test_resume_with_a_foreign_config_json(text, tmp_path, capsys):
    out = tmp_path / "project"
    out.mkdir()
    (out / "config.json").write_text(text)
    code, _, err = run_inprocess([*TINY, "--out", str(out), "--resume"], capsys)
    assert_refused(code, "", err)
    assert snapshot(out) == {"config.json": text.encode()}


def test_seed_too_large_for_a_prng_key(tmp_path, capsys):
    code, out, err = run_inprocess([*TINY, "--seed", str(2**63), "--out", str(tmp_path / "out")], capsys)
    assert_refused(code, out, err)
    assert list(tmp_path.iterdir()) == []


def test_presets_are_the_published_sweeps_and_the_command_line_wins(capsys):
    from grokjax.cli import config_from_args

    def config(argv):
        a = experiment.parse_args(argv)
        return config_from_args(a, seed=0, n_seeds=1)

    s4, default = config(["--preset", "s4"]), config([])
    assert s4 == default and s4.problem.groups == ("S(4)", "times(A(4),Z(2))") and s4.model.embed_dim == 32
    s5 = config(["--preset", "s5"])
    assert s5.problem.groups == ("S(5)", "times(A(5),Z(2))") and (s5.model.embed_dim, s5.model.hidden_dim) == (128, 128)
    z48 = config(["--preset", "z48", "--epochs", "100"])
    assert z48.model.kind == "mlp3" and (z48.model.embed_dim, z48.model.hidden_dim) == (32, 64)
    assert z48.optimizer.weight_decay == 2e-4 and z48.schedule.length == 100
    assert z48.problem.groups == ("Z(48,2)", "twZ(48)")
    code, _, err = run_main(experiment.main, ["--preset", "s5", "--resume", "--out", "x"], capsys)
    assert code == 2 and "--preset" in err


def test_modular_problems_accelerators_and_losses_from_the_command_line_and_back(capsys, tmp_path):
    from grokjax.cli import config_from_args, config_options, grid_options
    from grokjax.problems import ModularProblem

    argv = ["--problem", "modular", "--p", "7", "--op", "x*y", "--split", "thread", "--filter", "ma",
            "--filter-window", "3", "--filter-lambda", "5", "2", "--ortho", "--loss", "stablemax", "--optimizer", "adamw"]
    a = experiment.parse_args(argv)
    cfg = config_from_args(a, seed=0, n_seeds=2, **grid_options(a))
    assert cfg.problem == ModularProblem(7, "x*y", 0.5, "thread", 0)
    assert (cfg.optimizer.filter, cfg.optimizer.filter_window, cfg.filter_lambda_grid) == ("ma", 3, (5.0, 2.0))
    assert cfg.optimizer.ortho and cfg.loss == "stablemax" and cfg.optimizer.kind == "adamw"
    for c in (cfg, config_from_args(experiment.parse_args([]), seed=0, n_seeds=2)):  # what --resume rebuilds
        parser = experiment.argparse.ArgumentParser()
        from grokjax.cli import add_config_options

        add_config_options(parser)
        parser.set_defaults(**config_options(c))
        back = parser.parse_args([])
        assert config_from_args(back, seed=0, n_seeds=2, **grid_options(back)) == c
    code, out, err = run_main(experiment.main, argv[:8] + ["--epochs", "20", "--log-every", "10", "--n-seeds", "2",
                                                           "--out", str(tmp_path / "m"), "--no-progress",
                                                           "--no-compile-cache", "--workers", "1"], capsys)
    assert code == 0, err
    assert np.load(tmp_path / "m" / "traces.npz")["heldout_acc"].shape == (2, 3)


def test_model_options_a_model_does_not_have_are_one_sentence(capsys):
    from grokjax.cli import config_from_args

    a = experiment.parse_args(["--model", "onehot_mlp", "--hidden-dim", "64"])
    assert config_from_args(a, seed=0, n_seeds=1).model.hidden_dim == 64
    for argv, message in ((["--model", "linear", "--hidden-dim", "4"], "no --hidden-dim option"),
                          (["--model", "onehot_mlp", "--no-unembed-bias"], "no output bias")):
        code, _, err = run_main(experiment.main, argv + ["--n-seeds", "1"], capsys)
        assert code == 2 and message in err and "Traceback" not in err
