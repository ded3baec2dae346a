"""Sweeps: seed i's numbers are independent of n_seeds and chunk size; a killed sweep resumes exactly."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from grokjax.storage import load_params, read_arrays
from grokjax.sweep import SweepConfig, run_sweep
from grokjax.train import TrainConfig

SCRIPT = Path(__file__).parents[1] / "experiments" / "sweep_intersection.py"
GROUPS = ("S(3)", "times(A(3),Z(2))")


def tiny(n_seeds, epochs=30, log_every=5):
    train = TrainConfig(embed_dim=8, hidden_dim=8, epochs=epochs, log_every=log_every)
    return SweepConfig(groups=GROUPS, n_seeds=n_seeds, seeds_per_call=4, train=train)


def arrays(root: Path, n: int) -> dict:
    """Every per-seed array of a results directory, first n seeds."""
    out = {}
    for name in ("traces", "seeds"):
        for k, v in read_arrays(root / f"{name}.npz").items():
            out[f"{name}/{k}"] = v if k == "epochs" else v[:n]
    out.update({f"params/{k}": v[:n] for k, v in load_params(root / "params").items()})
    return out


def assert_identical(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k


def test_seed_results_do_not_depend_on_n_seeds_or_chunk_size(tmp_path):
    quiet = dict(progress=False, log=lambda *_: None)
    run_sweep(tiny(13), tmp_path / "a", chunk_size=8, **quiet)
    run_sweep(tiny(3), tmp_path / "b", **quiet)
    run_sweep(tiny(6), tmp_path / "c", chunk_size=1, **quiet)
    ref = arrays(tmp_path / "a", 3)
    assert_identical(ref, arrays(tmp_path / "b", 3))
    assert_identical(ref, arrays(tmp_path / "c", 3))
    assert_identical(arrays(tmp_path / "a", 6), arrays(tmp_path / "c", 6))
    assert not np.array_equal(ref["params/w_left"][0], ref["params/w_left"][1])


def test_killed_sweep_resumes_to_the_same_arrays(tmp_path):
    args = [sys.executable, str(SCRIPT), "--groups", *GROUPS, "--embed-dim", "8", "--hidden-dim", "8",
            "--epochs", "3000", "--log-every", "100", "--n-seeds", "80", "--seeds-per-call", "4", "--no-progress"]
    out = tmp_path / "killed"
    proc = subprocess.Popen([*args, "--chunk-size", "1", "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while len(list((out / "chunks").glob("seeds_*.npz"))) < 3 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    saved = len(list((out / "chunks").glob("seeds_*.npz")))
    assert 3 <= saved < 20 and not (out / "outcome.json").exists(), "the sweep was killed part-way"

    done = subprocess.run([*args, "--chunk-size", "12", "--out", str(out), "--resume"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert not (out / "chunks").exists() and not list(out.glob(".*tmp*"))
    run_sweep(tiny(80, 3000, 100), tmp_path / "whole", progress=False, log=lambda *_: None)
    assert_identical(arrays(out, 80), arrays(tmp_path / "whole", 80))
