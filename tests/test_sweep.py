"""Sweeps: a run's numbers do not depend on n_seeds, chunk size, workers, devices or grid; a killed sweep resumes exactly."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dataclasses
import json

import jax
import numpy as np

from configs import S3_VS_A3Z2, small
from grokjax.figures.sweep import draw_all
from grokjax.run.storage import load_params, read_arrays
from grokjax.run.sweep import run_sweep

SCRIPT = Path(__file__).parents[1] / "experiments" / "sweep_intersection.py"
GROUPS = S3_VS_A3Z2


QUIET = dict(progress=False, log=lambda *_: None)


def tiny(n_seeds, epochs=30, log_every=5, **kw):
    return small(epochs=epochs, log_every=log_every, n_seeds=n_seeds, seeds_per_call=4, **kw)


def arrays(root: Path, runs) -> dict:
    """Every per-run array of a results directory, for the given runs (a slice or indices)."""
    out = {}
    for name in ("traces", "seeds"):
        for k, v in read_arrays(root / f"{name}.npz").items():
            out[f"{name}/{k}"] = v if k in ("epochs", "checkpoint_epochs") else v[runs]
    for part in ("params", "opt_state", "checkpoints", "checkpoint_opt_state"):
        if (root / part).exists():
            out.update({f"{part}/{k}": v[runs] for k, v in load_params(root / part).items()})
    return out


def assert_identical(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k], equal_nan=a[k].dtype.kind == "f"), k


def test_seed_results_do_not_depend_on_n_seeds_chunk_size_or_workers(tmp_path):
    run_sweep(tiny(13), tmp_path / "a", chunk_size=8, workers=1, **QUIET)
    run_sweep(tiny(3), tmp_path / "b", workers=1, **QUIET)
    run_sweep(tiny(6), tmp_path / "c", chunk_size=1, workers=2, **QUIET)
    ref = arrays(tmp_path / "a", slice(3))
    assert_identical(ref, arrays(tmp_path / "b", slice(3)))
    assert_identical(ref, arrays(tmp_path / "c", slice(3)))
    assert_identical(arrays(tmp_path / "a", slice(6)), arrays(tmp_path / "c", slice(6)))
    assert not np.array_equal(ref["params/w_left"][0], ref["params/w_left"][1])
    assert json.loads((tmp_path / "c" / "run.json").read_text())["workers"] == 2


def test_eight_devices_give_the_one_device_numbers(tmp_path):
    """The seed axis sharded over 8 forced host devices (a subprocess) against one device here."""
    args = [sys.executable, str(SCRIPT), "--groups", *GROUPS, "--embed-dim", "8", "--hidden-dim", "8", "--epochs", "30",
            "--log-every", "5", "--n-seeds", "13", "--seeds-per-call", "4", "--no-progress", "--out", str(tmp_path / "m")]
    done = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "JAX_NUM_CPU_DEVICES": "8"})
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "m" / "run.json").read_text())["n_devices"] == 8
    run_sweep(tiny(13), tmp_path / "one", workers=1, **QUIET)
    assert_identical(arrays(tmp_path / "m", slice(13)), arrays(tmp_path / "one", slice(13)))


def test_two_process_distributed_sweep_gives_the_single_process_numbers(tmp_path):
    """Two processes joined by jax.distributed on this machine share the chunks of one results directory."""
    port = 20000 + os.getpid() % 20000
    args = [sys.executable, str(SCRIPT), "--groups", *GROUPS, "--embed-dim", "8", "--hidden-dim", "8", "--epochs", "30",
            "--log-every", "5", "--n-seeds", "13", "--seeds-per-call", "4", "--chunk-size", "4", "--workers", "1",
            "--no-progress", "--out", str(tmp_path / "d"), "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2"]
    procs = [subprocess.Popen([*args, "--process-id", str(i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outs]
    assert "neither" in outs[0][0] and "neither" not in outs[1][0]  # process 0 reports
    assert json.loads((tmp_path / "d" / "run.json").read_text())["n_processes"] == 2
    run_sweep(tiny(13), tmp_path / "one", workers=1, **QUIET)
    assert_identical(arrays(tmp_path / "d", slice(13)), arrays(tmp_path / "one", slice(13)))


def test_grid_runs_equal_plain_sweeps_at_each_grid_point(tmp_path):
    grid = tiny(3, lr_grid=(1e-2, 3e-3), weight_decay_grid=(0.0, 1e-3))
    run_sweep(grid, tmp_path / "grid", workers=1, **QUIET)
    seeds = read_arrays(tmp_path / "grid" / "seeds.npz")
    assert seeds["seed"].tolist() == [0, 1, 2] * 4 and seeds["grid_index"].tolist() == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
    assert np.allclose(seeds["lr"], [1e-2] * 6 + [3e-3] * 6) and np.allclose(seeds["weight_decay"], [0, 0, 0, 1e-3, 1e-3, 1e-3] * 2)
    point = dataclasses.replace(grid.optimizer, lr=3e-3, weight_decay=1e-3)
    run_sweep(dataclasses.replace(grid, lr_grid=(), weight_decay_grid=(), optimizer=point), tmp_path / "one", workers=1, **QUIET)
    mine = arrays(tmp_path / "grid", slice(9, 12))
    theirs = arrays(tmp_path / "one", slice(3))
    for key in ("seeds/seed", "seeds/grid_index", "seeds/lr", "seeds/weight_decay"):
        del mine[key], theirs[key]
    assert_identical(mine, theirs)
    outcome = json.loads((tmp_path / "grid" / "outcome.json").read_text())
    assert [(g["lr"], g["weight_decay"], g["n_seeds"]) for g in outcome["grid"]] == [
        (1e-2, 0.0, 3), (1e-2, 1e-3, 3), (3e-3, 0.0, 3), (3e-3, 1e-3, 3)]
    figures = draw_all(tmp_path / "grid")  # outcome bars per grid point
    assert len(figures) == 3 and all(f.read_bytes().startswith(b"\x89PNG") for f in figures)


def test_a_grokfast_grid_point_is_bit_identical_to_its_plain_sweep(tmp_path):
    from grokjax.optim import OptimizerSpec

    grid = dataclasses.replace(tiny(2, epochs=10), optimizer=OptimizerSpec(filter="ema"), filter_alpha_grid=(0.9, 0.98),
                               filter_lambda_grid=(2.0, 5.0))
    run_sweep(grid, tmp_path / "grid", workers=1, **QUIET)
    seeds = read_arrays(tmp_path / "grid" / "seeds.npz")
    np.testing.assert_array_equal(seeds["filter_lambda"], np.float32([2, 2, 5, 5] * 2))
    point = dataclasses.replace(grid.optimizer, filter_alpha=0.9, filter_lambda=5.0)
    run_sweep(dataclasses.replace(grid, optimizer=point, filter_alpha_grid=(), filter_lambda_grid=()), tmp_path / "one",
              workers=1, **QUIET)
    mine, theirs = arrays(tmp_path / "grid", slice(2, 4)), arrays(tmp_path / "one", slice(2))
    for key in ("seeds/seed", "seeds/grid_index"):
        del mine[key], theirs[key]
    assert_identical(mine, theirs)
    outcome = json.loads((tmp_path / "grid" / "outcome.json").read_text())
    assert [(g["filter_alpha"], g["filter_lambda"]) for g in outcome["grid"]] == [(0.9, 2.0), (0.9, 5.0), (0.98, 2.0),
                                                                                   (0.98, 5.0)]


def test_kept_checkpoints_match_the_trace_and_final_parameters(tmp_path):
    run_sweep(tiny(5), tmp_path / "plain", workers=1, **QUIET)
    run_sweep(tiny(5, keep_every=10), tmp_path / "kept", workers=1, **QUIET)
    plain, kept = arrays(tmp_path / "plain", slice(5)), arrays(tmp_path / "kept", slice(5))
    assert kept.pop("traces/checkpoint_epochs").tolist() == [0, 10, 20, 30]
    assert np.array_equal(kept.pop("traces/checkpoint_fit_epoch")[:, -1], plain["seeds/fit_epoch"])
    checkpoints = {k: kept.pop(k) for k in list(kept) if k.startswith("checkpoint")}
    assert_identical(plain, kept)
    for name, final in plain.items():
        part, leaf = name.split("/", 1)
        if part in ("params", "opt_state"):
            saved = checkpoints[f"{'checkpoints' if part == 'params' else 'checkpoint_opt_state'}/{leaf}"]
            assert saved.shape == (5, 4, *final.shape[1:])
            assert np.array_equal(saved[:, -1], final)


def test_killed_sweep_resumes_to_the_same_arrays(tmp_path):
    args = [sys.executable, str(SCRIPT), "--groups", *GROUPS, "--embed-dim", "8", "--hidden-dim", "8",
            "--epochs", "3000", "--log-every", "100", "--n-seeds", "48", "--seeds-per-call", "4", "--no-progress"]
    out = tmp_path / "killed"
    proc = subprocess.Popen([*args, "--chunk-size", "1", "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while len(list((out / "chunks").glob("runs_*.npz"))) < 3 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    saved = len(list((out / "chunks").glob("runs_*.npz")))
    assert 3 <= saved < 12 and not (out / "outcome.json").exists(), "the sweep was killed part-way"

    # Resuming needs only the directory: the saved config supplies every option.
    done = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), "--resume", "--chunk-size", "12", "--no-progress"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert not (out / "chunks").exists() and not list(out.glob(".*tmp*"))
    run_sweep(tiny(48, 3000, 100), tmp_path / "whole", workers=1, **QUIET)
    assert_identical(arrays(out, slice(48)), arrays(tmp_path / "whole", slice(48)))


def test_second_run_of_a_config_takes_its_program_from_the_compile_cache(tmp_path):
    cache = tmp_path / "cache"
    args = [sys.executable, str(SCRIPT), "--groups", *GROUPS, "--embed-dim", "8", "--hidden-dim", "8", "--epochs", "30",
            "--log-every", "5", "--n-seeds", "3", "--seeds-per-call", "4", "--no-progress", "--compile-cache", str(cache)]
    for out in ("a", "b"):
        done = subprocess.run([*args, "--out", str(tmp_path / out)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        if out == "a":
            entries = sorted(p.name for p in cache.iterdir())
            assert any(name.startswith("jit_train") for name in entries), entries
    assert sorted(p.name for p in cache.iterdir()) == entries  # nothing new was compiled
    assert_identical(arrays(tmp_path / "a", slice(3)), arrays(tmp_path / "b", slice(3)))



def test_a_run_resumed_from_its_checkpoint_ends_with_the_bits_of_the_uninterrupted_run(tmp_path):
    from grokjax.run.states import continue_runs, load_states
    from grokjax.run.sweep import run_inputs

    cfg = tiny(5, keep_every=10)
    run_sweep(cfg, tmp_path / "kept", workers=1, **QUIET)
    kept = load_states(tmp_path / "kept", cfg, checkpoints=True)
    final = load_states(tmp_path / "kept", cfg)
    at_10 = jax.tree.map(lambda x: x[:, 1], kept)  # checkpoint 1: epoch 10 of 30
    assert at_10.epoch.tolist() == [10] * 5
    hparams = run_inputs(cfg)[1]
    resumed, trace = continue_runs(cfg, at_10, hparams, n_logs=4, workers=1)
    for got, want in zip(jax.tree.leaves((resumed.params, resumed.opt_state)), jax.tree.leaves((final.params, final.opt_state))):
        assert got.dtype == want.dtype and np.array_equal(got, want)
    saved = read_arrays(tmp_path / "kept" / "traces.npz")
    assert np.array_equal(trace.train_loss, saved["train_loss"][:, 3:])  # epochs 15 .. 30
    fresh, _ = continue_runs(cfg, at_10, hparams, n_logs=4, fresh_optimizer=True, workers=1)
    assert not np.array_equal(fresh.params["w_left"], final.params["w_left"])  # Adam restarted: another path
    assert fresh.opt_state[1].count.tolist() == [20] * 5  # the fresh optimizer counted only the 20 new steps


def test_a_minibatch_run_with_warmup_resumes_to_the_same_bits(tmp_path):
    """Minibatches (24 points in batches of 7: 4 steps an epoch) and a 5-step warmup: the data order and the
    schedule's count continue where the checkpoint stopped."""
    from grokjax.run.states import continue_runs, load_states
    from grokjax.run.sweep import run_inputs

    cfg = tiny(4, keep_every=10, batch_size=7)
    cfg = dataclasses.replace(cfg, schedule=dataclasses.replace(cfg.schedule, warmup_steps=5))
    run_sweep(cfg, tmp_path / "mb", workers=1, **QUIET)
    at_20 = jax.tree.map(lambda x: x[:, 2], load_states(tmp_path / "mb", cfg, checkpoints=True))
    assert at_20.epoch.tolist() == [80] * 4  # optimizer steps: 20 epochs x 4
    resumed, _ = continue_runs(cfg, at_20, run_inputs(cfg)[1], n_logs=2, workers=1)
    final = load_states(tmp_path / "mb", cfg)
    for got, want in zip(jax.tree.leaves((resumed.params, resumed.opt_state)), jax.tree.leaves((final.params, final.opt_state))):
        assert np.array_equal(got, want)
