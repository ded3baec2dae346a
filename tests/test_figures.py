"""Figures drawn from a small synthetic results directory (no training): labels, PNG files, CLI errors, no jax,
LLC figures and correlations."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr

from grokjax.errors import UserError
from grokjax.figures.common import seed_outcomes
from grokjax.figures.llc import llc_correlations, load_llc
from grokjax.figures.sweep import draw_all
from grokjax.run.results import load_sweep
from grokjax.analysis.outcomes import outcome_summary

ROOT = Path(__file__).resolve().parents[1]
GROUPS = ["S(4)", "times(A(4),Z(2))"]
# Two seeds each for 'both' and 'S(4) only', three for 'neither'; 'times(A(4),Z(2)) only' has none.
GROKKED = np.array([[True, True], [True, True], [True, False], [True, False], [False, False], [False, False],
                    [False, False]])
EXPECTED = ["both", "both", "S(4) only", "S(4) only", "neither", "neither", "neither"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_fake_sweep(root: Path) -> Path:
    """The files a sweep writes, filled with synthetic curves that end in the outcomes of GROKKED."""
    root.mkdir()
    rng = np.random.default_rng(0)
    s, g = GROKKED.shape
    epochs = np.arange(0, 110, 10)
    ramp = np.clip(epochs / 50, 0, 1)
    group_acc = np.where(GROKKED[:, None, :], 0.58 + 0.42 * ramp[None, :, None], 0.58 * ramp[None, :, None])
    group_acc = np.clip(group_acc + 0.01 * rng.random(group_acc.shape) * (ramp < 1)[None, :, None], 0, 1)
    train_loss = np.exp(-epochs / 20)[None, :] * (1 + rng.random((s, len(epochs))))
    weight_norm = 10 + epochs[None, :] / 10 + rng.random((s, len(epochs)))
    traces = {"epochs": epochs, "train_loss": train_loss, "train_acc": np.ones((s, len(epochs))),
              "group_loss": 1 - group_acc, "group_acc": group_acc, "weight_norm": weight_norm,
              "margin": rng.random((s, len(epochs)))}
    np.savez(root / "traces.npz", **traces)
    np.savez(root / "seeds.npz", seed=np.arange(s), fit_epoch=np.full(s, 50), grokked=GROKKED,
             grok_epoch=np.where(GROKKED, 50, -1), **{f"final_{k}": v[:, -1] for k, v in traces.items() if k != "epochs"})
    config = {"sweep": {"groups": GROUPS, "grok_threshold": 0.999, "train": {"epochs": 100, "log_every": 10}},
              "task": {"n": 24, "n_train": 336, "group_names": GROUPS}, "environment": {}}
    (root / "config.json").write_text(json.dumps(config))
    (root / "outcome.json").write_text(json.dumps(outcome_summary(GROKKED, GROUPS)))
    return root


@pytest.fixture
def results(tmp_path):
    return write_fake_sweep(tmp_path / "results")


def test_seed_outcomes_labels_every_seed():
    assert seed_outcomes(GROKKED, GROUPS).tolist() == EXPECTED
    assert seed_outcomes(np.array([[False, True]]), GROUPS).tolist() == ["times(A(4),Z(2)) only"]


def test_seed_outcomes_rejects_a_group_count_mismatch():
    with pytest.raises(ValueError, match="expected"):
        seed_outcomes(GROKKED, GROUPS[:1])


def test_draw_all_writes_three_pngs_atomically(results):
    paths = draw_all(results)
    assert [p.name for p in paths] == ["outcome_fractions.png", "loss_vs_weight_norm.png", "accuracy_curves.png"]
    for p in paths:
        assert p.parent == results / "figures"
        assert p.read_bytes()[:8] == PNG_MAGIC and p.stat().st_size > 1000
    assert sorted(p.name for p in (results / "figures").iterdir()) == sorted(p.name for p in paths)


def test_load_sweep_names_the_missing_file(results):
    (results / "traces.npz").unlink()
    with pytest.raises(UserError, match=r"traces\.npz is missing"):
        load_sweep(results)


def test_load_sweep_names_a_damaged_file(results):
    arrays = dict(np.load(results / "seeds.npz"))
    del arrays["grokked"]
    np.savez(results / "seeds.npz", **arrays)
    with pytest.raises(UserError, match=r"seeds\.npz lacks the arrays grokked"):
        load_sweep(results)
    (results / "traces.npz").write_text("not an archive")
    with pytest.raises(UserError, match=r"traces\.npz: it is not a numpy"):
        load_sweep(results)


def test_cli_writes_figures_prints_their_paths_and_never_imports_jax(results, tmp_path):
    out = tmp_path / "figs"
    code = ("import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__'); "
            "assert 'jax' not in sys.modules, 'jax was imported'")
    cli = str(ROOT / "experiments" / "figures.py")
    proc = subprocess.run([sys.executable, "-c", code, cli, str(results), "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert [Path(line) for line in proc.stdout.splitlines()] == [out / "outcome_fractions.png",
                                                                 out / "loss_vs_weight_norm.png",
                                                                 out / "accuracy_curves.png"]


def test_cli_on_a_missing_directory_is_one_line_and_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / "figures.py"), str(tmp_path / "nowhere")],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert "nowhere" in proc.stderr



def write_fake_llc(root: Path) -> np.ndarray:
    """LLC files as experiments/llc.py writes them: per seed (the last seed's chains all diverged), per
    checkpoint, and a 3 x 2 calibration grid of 2 seeds; returns the per-seed LLC."""
    rng = np.random.default_rng(1)
    s = len(GROKKED)
    llc = 5 + 3 * GROKKED[:, 0] + rng.random(s)
    llc[-1] = np.nan
    np.savez(root / "llc.npz", run=np.arange(s), llc=llc, n_diverged=np.r_[np.zeros(s - 1, int), 4])
    np.savez(root / "llc_checkpoints.npz", run=np.arange(s), epochs=np.array([0, 50, 100]), llc=rng.random((s, 3)))
    np.savez(root / "llc_calibration.npz", eps=np.array([1e-4, 2e-4, 4e-4]), nbeta=np.array([100.0, 1000.0]),
             llc=rng.random((3, 2, 2)), rhat=1 + rng.random((3, 2, 2)) / 5, stable=rng.random((3, 2)) > 0.5,
             rhat_max=1.1)
    return llc


def test_llc_figures_are_drawn_beside_the_others(results):
    write_fake_llc(results)
    names = [p.name for p in draw_all(results)]
    assert names == ["outcome_fractions.png", "loss_vs_weight_norm.png", "accuracy_curves.png", "llc_by_outcome.png",
                     "llc_vs_loss_and_norm.png", "llc_over_training.png", "llc_calibration.png"]
    for name in names:
        assert (results / "figures" / name).read_bytes()[:8] == PNG_MAGIC


def test_llc_correlations_match_scipy_and_leave_out_diverged_seeds(results):
    llc = write_fake_llc(results)
    got = llc_correlations(load_sweep(results), load_llc(results, "llc"))
    seeds = np.load(results / "seeds.npz")
    ok = np.isfinite(llc)
    loss, norm = seeds["final_train_loss"][ok], seeds["final_weight_norm"][ok]
    assert got["final train loss"]["n"] == got["final weight norm"]["n"] == len(GROKKED) - 1
    assert got["final train loss"]["pearson"] == pytest.approx(pearsonr(np.log10(loss), llc[ok])[0])
    assert got["final train loss"]["spearman"] == pytest.approx(spearmanr(loss, llc[ok])[0])
    assert got["final weight norm"]["pearson"] == pytest.approx(pearsonr(norm, llc[ok])[0])
    assert got["final weight norm"]["spearman"] == pytest.approx(spearmanr(norm, llc[ok])[0])


def test_cli_prints_the_llc_correlations_without_jax(results, tmp_path):
    write_fake_llc(results)
    code = ("import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__'); "
            "assert 'jax' not in sys.modules, 'jax was imported'")
    proc = subprocess.run([sys.executable, "-c", code, str(ROOT / "experiments" / "figures.py"), str(results),
                           "--out", str(tmp_path / "figs")], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 9 and lines[-2].startswith("LLC vs final train loss: Pearson r = ")
    assert lines[-1].startswith("LLC vs final weight norm: Pearson r = ") and lines[-1].endswith("over 6 seeds")


def test_many_grid_points_are_drawn_as_lines_against_the_point_naming_what_varies():
    """Beyond six grid points one line per outcome runs across the points; the tick labels name only the axes
    whose values differ (here the learning rate, not the constant weight decay)."""
    from grokjax.figures.sweep import outcome_fractions
    from grokjax.run.grid import point_labels

    lrs = [1e-3 * 2**i for i in range(8)]
    grid = [{"lr": lr, "weight_decay": 1.0, **outcome_summary(GROKKED[: 2 + i % 5], GROUPS)}
            for i, lr in enumerate(lrs)]
    assert point_labels(grid) == [f"lr {lr:g}" for lr in lrs]
    assert point_labels(grid[:2]) == ["lr 0.001", "lr 0.002"]
    fig = outcome_fractions({"outcome": {"grid": grid}})
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == [f"lr {lr:g}" for lr in lrs]
    names = [r["outcome"] for r in grid[0]["outcomes"]]
    lines = [line for line in ax.get_lines() if line.get_linestyle() == "-"]  # not the error bars' caps
    assert len(lines) == len(names)
    both = lines[names.index("both")].get_ydata()
    np.testing.assert_allclose(both, [p["outcomes"][names.index("both")]["fraction"] for p in grid])
