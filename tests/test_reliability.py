"""Nothing lost, nothing silently wrong: diverged runs, interrupts and faults at every write step, overwrites,
impossible sizes, corrupt chunks, a streaming merge and concurrent writers.

Interrupts and faults are injected at the write steps of a sweep through `grokjax.run.outdir`'s event hook:
in this process (Ctrl-C as a KeyboardInterrupt, a full disk as an OSError), or by killing a real subprocess
(tests/faults.py) with SIGKILL or SIGTERM at a chosen step.
"""

import errno
import importlib.util
import itertools
import json
import shutil
import signal
import subprocess
import sys
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from cli_runner import run_main
from configs import S3_VS_A3Z2
from grokjax.errors import UserError
from grokjax.run import outdir, runner, storage
from grokjax.run import sweep as sweep_module
from grokjax.run.outdir import Fault
from grokjax.run.results import load_sweep
from grokjax.run.sweep import run_sweep
from test_sweep import QUIET, arrays, assert_identical, tiny

ROOT = Path(__file__).resolve().parents[1]
FAULTS = Path(__file__).with_name("faults.py")
ARGS = ["--groups", *S3_VS_A3Z2, "--embed-dim", "8", "--hidden-dim", "8", "--epochs", "30", "--log-every", "5",
        "--seeds-per-call", "4", "--chunk-size", "4", "--workers", "1", "--no-progress"]
SIX = [*ARGS, "--n-seeds", "6"]  # two chunks: runs 0-3 and 4-5


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sweep_cli, llc_cli = load("sweep_intersection"), load("llc")


def cli(argv, capsys):
    return run_main(sweep_cli.main, argv, capsys)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Every array of the uninterrupted 6-run sweep of SIX."""
    root = tmp_path_factory.mktemp("reference") / "run"
    run_sweep(tiny(6), root, chunk_size=4, workers=1, **QUIET)
    return arrays(root, slice(6))


def leftovers(out: Path) -> list[str]:
    """Temporary files, stages and lock files a run left in or beside `out`."""
    found = [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]
    if out.is_dir():
        found += [str(p.relative_to(out)) for p in out.rglob("*") if outdir.is_temporary(p.name)]
    return found


def one_sentence(err: str, start: str = "error: ") -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(start) and "Traceback" not in err, err
    return lines[0]


def nth_step(k: int):
    """An event hook pressing Ctrl-C at the k-th write step (from 0)."""
    count = itertools.count()

    def hook(name):
        if next(count) == k:
            raise KeyboardInterrupt
    return hook


def at(text: str, raise_: BaseException, nth: int = 1):
    """An event hook raising `raise_` at the `nth` write step whose name contains `text`."""
    seen = itertools.count(1)

    def hook(name):
        if text in name and next(seen) == nth:
            raise raise_
    return hook


# ------------------------------------------------------------------ 1. diverged runs


def test_diverged_runs_are_flagged_counted_apart_announced_and_left_out_of_analyses(tmp_path, capsys):
    out = tmp_path / "div"
    code, stdout, err = cli([*ARGS, "--n-seeds", "4", "--optimizer", "sgd", "--lr", "1e-2", "1e4", "--out", str(out)],
                            capsys)
    assert code == 0, err
    assert "warning: 4 of 8 runs diverged (non-finite loss or parameters)" in err
    seeds = storage.read_arrays(out / "seeds.npz")
    assert seeds["diverged"].tolist() == [False] * 4 + [True] * 4
    fine, diverged = json.loads((out / "outcome.json").read_text())["grid"]
    assert fine["n_diverged"] == 0 and sum(r["count"] for r in fine["outcomes"]) == 4
    assert diverged["n_seeds"] == 4 and diverged["n_diverged"] == 4 and diverged["n_finite"] == 0
    assert diverged["diverged"]["count"] == 4 and diverged["diverged"]["fraction"] == 1.0
    assert all(r["count"] == 0 and r["fraction"] is None for r in diverged["outcomes"])  # no longer 'neither 4'
    table = stdout[stdout.index("lr 10000"):].splitlines()
    assert any(line.split()[:2] == ["diverged", "4"] for line in table) and "did not diverge" in stdout
    assert not any(line.split()[:2] == ["neither", "4"] for line in table)
    # the analyses that read the runs warn and leave them out
    from grokjax.figures import draw
    paths, _ = draw(out)
    assert len(paths) == 3 and "warning: 4 of 8 runs" in capsys.readouterr().err
    code, stdout, err = run_main(llc_cli.main, [str(out), "--steps", "40", "--thin", "4", "--chains", "2",
                                                "--no-progress"], capsys)
    assert code == 0, err
    assert "warning: 4 of 8 runs" in err and "left out of the summary" in err
    assert "(4 runs that diverged in training left out)" in stdout
    with pytest.warns(UserWarning, match="4 of 8 runs .* diverged"):
        from grokjax.run.states import load_states
        load_states(out, sweep_module.read_sweep_config(out))


# ------------------------------------------------------------------ 2. interrupts at every write step


def test_ctrl_c_at_every_write_step_names_the_directory_and_one_command_recovers(tmp_path, capsys, monkeypatch,
                                                                                 reference):
    steps = []
    monkeypatch.setattr(outdir, "_hook", steps.append)
    code, _, err = cli([*SIX, "--out", str(tmp_path / "whole")], capsys)
    assert code == 0, err
    assert any("merge" in s for s in steps) and any("rename runs_" in s for s in steps) and len(steps) > 20
    for k, step in enumerate(steps):
        out = tmp_path / f"at{k}"
        monkeypatch.setattr(outdir, "_hook", nth_step(k))
        code, _, err = cli([*SIX, "--out", str(out)], capsys)
        line = one_sentence(err, "Interrupted; ")
        assert code == 130 and "DIR" not in line, (step, err)
        assert not leftovers(out), (step, leftovers(out))
        monkeypatch.setattr(outdir, "_hook", None)
        if "--resume" in line:
            assert f"--resume --out {out}" in line, line
            code, _, err = cli(["--out", str(out), "--resume", "--no-progress"], capsys)
        else:
            assert "run the same command again" in line and not out.exists(), (step, line)
            code, _, err = cli([*SIX, "--out", str(out)], capsys)
        assert code == 0, (step, err)
        assert_identical(arrays(out, slice(6)), reference)
        assert not leftovers(out) and not (out / "chunks").exists()
        shutil.rmtree(out)


@pytest.mark.parametrize("step, signame, then", [
    ("rename task.npz", "SIGKILL", "again"),  # the start, half written: a plain rerun (or --overwrite) works
    ("rename runs_00000004", "SIGKILL", "resume"),  # a chunk's temporary file left behind
    ("write run.json", "SIGKILL", "resume"),  # right after outcome.json: chunks/ and no run.json
    ("merge: seeds.npz in place", "SIGTERM", "resume"),  # `kill PID`: handled like Ctrl-C
])
def test_a_killed_sweep_recovers_with_one_command_and_leaves_no_temporary_file(tmp_path, capsys, reference, step,
                                                                               signame, then):
    out = tmp_path / "killed"
    done = subprocess.run([sys.executable, str(FAULTS), step, "1", signame, *SIX, "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    if signame == "SIGKILL":
        assert done.returncode == -signal.SIGKILL, done.stderr
    else:
        assert done.returncode == 130 and f"--resume --out {out}" in one_sentence(done.stderr, "Interrupted; ")
        assert not leftovers(out)
    if then == "resume":
        with pytest.raises(UserError, match="unfinished|missing"):
            load_sweep(out)
        code, _, err = cli(["--out", str(out), "--resume", "--no-progress"], capsys)
    else:
        assert not out.exists()
        code, _, err = cli([*SIX, "--out", str(out), "--overwrite"], capsys)
    assert code == 0, err
    assert_identical(arrays(out, slice(6)), reference)
    assert not leftovers(out) and not (out / "chunks").exists()


@pytest.mark.parametrize("step", ["rename runs_00000004", "merge: seeds.npz in place"])
def test_a_full_disk_is_one_sentence_with_the_resume_hint(tmp_path, capsys, monkeypatch, reference, step):
    out = tmp_path / "full"
    monkeypatch.setattr(outdir, "_hook", at(step, OSError(errno.ENOSPC, "No space left on device")))
    code, _, err = cli([*SIX, "--out", str(out)], capsys)
    line = one_sentence(err)
    assert code == 2 and "No space left on device" in line and f"--resume --out {out}" in line
    assert not leftovers(out)
    monkeypatch.setattr(outdir, "_hook", None)
    code, _, err = cli(["--out", str(out), "--resume", "--no-progress"], capsys)
    assert code == 0, err
    assert_identical(arrays(out, slice(6)), reference)


def test_a_dead_worker_is_one_sentence_with_the_resume_hint(tmp_path, capsys, monkeypatch, reference):
    with runner.PinnedPool(__import__("faults").die, [()]) as pool:  # a real death: SIGKILL
        with pytest.raises(Fault, match=r"A worker process died \(killed by signal 9: killed, or out of memory\)"):
            pool.get()
    with runner.PinnedPool(__import__("faults").fail, [()]) as pool:
        with pytest.raises(Fault, match="A worker process failed .*RESOURCE_EXHAUSTED"):
            pool.get()
    real = runner.run_program

    def dies_after_one_call(*args, **kwargs):
        calls = real(*args, **kwargs)
        yield next(calls)
        yield next(calls)
        raise Fault("A worker process died (killed by signal 9: killed, or out of memory)")

    monkeypatch.setattr(runner, "run_program", dies_after_one_call)
    out = tmp_path / "dead"
    code, _, err = cli([*SIX, "--out", str(out)], capsys)
    line = one_sentence(err)
    assert code == 2 and "A worker process died" in line and f"--resume --out {out}" in line, line
    assert [p.name for p in (out / "chunks").glob("runs_*")] == ["runs_00000000_00000004.npz"]
    monkeypatch.undo()
    code, _, err = cli(["--out", str(out), "--resume", "--no-progress"], capsys)
    assert code == 0, err
    assert_identical(arrays(out, slice(6)), reference)


def test_corrupt_chunks_are_discarded_and_trained_again(tmp_path, capsys, monkeypatch, reference):
    out = tmp_path / "corrupt"
    monkeypatch.setattr(outdir, "_hook", at("merge runs_", KeyboardInterrupt()))
    code, _, err = cli([*SIX, "--out", str(out)], capsys)
    assert code == 130
    monkeypatch.setattr(outdir, "_hook", None)
    first, second = sorted((out / "chunks").glob("runs_*"))
    data = bytearray(first.read_bytes())
    with zipfile.ZipFile(first) as z:  # one flipped byte inside the largest array: its CRC no longer matches
        info = max(z.infolist(), key=lambda i: i.compress_size)
    name_and_extra = int.from_bytes(data[info.header_offset + 26:info.header_offset + 28], "little") + \
        int.from_bytes(data[info.header_offset + 28:info.header_offset + 30], "little")
    data[info.header_offset + 30 + name_and_extra + info.compress_size // 2] ^= 0xFF
    first.write_bytes(bytes(data))
    second.write_bytes(second.read_bytes()[:200])  # cut short
    code, _, err = cli(["--out", str(out), "--resume", "--no-progress"], capsys)
    assert code == 0, err
    assert "warning: 2 chunk file(s)" in err and "trained again" in err
    assert_identical(arrays(out, slice(6)), reference)


# ------------------------------------------------------------------ 3. overwrite without risk


@pytest.mark.parametrize("step", ["write runs_00000000", "merge runs_00000004", "rename outcome.json",
                                  "commit: old results moved aside"])
def test_an_interrupted_overwrite_keeps_the_old_results_and_resume_finishes_it(tmp_path, capsys, monkeypatch, step):
    out = tmp_path / "results"
    code, _, err = cli([*ARGS, "--n-seeds", "4", "--out", str(out)], capsys)
    assert code == 0, err
    old = arrays(out, slice(4))
    monkeypatch.setattr(outdir, "_hook", at(step, KeyboardInterrupt()))
    code, _, err = cli([*SIX, "--lr", "3e-3", "--out", str(out), "--overwrite"], capsys)
    line = one_sentence(err, "Interrupted; ")
    assert code == 130 and f"{out} still holds its earlier results" in line and f"--resume --out {out}" in line
    assert_identical(arrays(out, slice(4)), old)  # complete and untouched
    load_sweep(out)
    monkeypatch.setattr(outdir, "_hook", None)
    code, _, err = cli(["--out", str(out), "--resume", "--no-progress"], capsys)
    assert code == 0, err
    run_sweep(tiny(6, lr=3e-3), tmp_path / "new", chunk_size=4, workers=1, **QUIET)
    assert_identical(arrays(out, slice(6)), arrays(tmp_path / "new", slice(6)))
    assert not leftovers(out)


def test_an_overwrite_killed_between_its_two_renames_loses_nothing(tmp_path, capsys):
    out = tmp_path / "results"
    code, _, err = cli([*ARGS, "--n-seeds", "4", "--out", str(out)], capsys)
    assert code == 0, err
    done = subprocess.run([sys.executable, str(FAULTS), "commit: old results moved aside", "1", "SIGKILL", *SIX,
                           "--lr", "3e-3", "--out", str(out), "--overwrite"], capture_output=True, text=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert not out.exists() and outdir.old_path(out).is_dir()  # the instant between the renames
    code, stdout, err = cli(["--out", str(out), "--resume", "--no-progress"], capsys)
    assert code == 0 and "replaced by the new results" in stdout, err
    run_sweep(tiny(6, lr=3e-3), tmp_path / "new", chunk_size=4, workers=1, **QUIET)
    assert_identical(arrays(out, slice(6)), arrays(tmp_path / "new", slice(6)))
    assert not leftovers(out)


# ------------------------------------------------------------------ 4. impossible sizes


@pytest.mark.parametrize("extra, memory_gib, fragment", [
    (["--n-seeds", "2000000000"], 8, "of disk"),  # the issue's: ~230 TiB of results
    (["--seeds-per-call", "100000"], 8, "lower --seeds-per-call"),  # the issue's: 100000 x 61 KiB, twice, per chunk
    (["--seeds-per-call", "4096", "--n-seeds", "8", "--epochs", "10", "--log-every", "5"], 0.5,
     "One call of 4096 runs needs"),  # about 330 KiB of device memory per run
    (["--groups", "Z(1000)", "Z(1000)"], 8, "One run needs"),  # the issue's: 16 GiB per run
    (["--chunk-size", "200000", "--n-seeds", "200000"], 8, "lower --chunk-size"),  # 2 x 200000 x 61 KiB
])
def test_impossible_sizes_are_refused_before_anything_is_written(tmp_path, capsys, monkeypatch, extra, memory_gib,
                                                                 fragment):
    monkeypatch.setattr(runner, "host_available_bytes", lambda: int(memory_gib * 2**30))  # the same on any machine
    monkeypatch.setattr(outdir, "free_disk_bytes", lambda path: 2**40)
    code, out, err = cli([*extra, "--no-progress", "--no-compile-cache", "--out", str(tmp_path / "out")], capsys)
    line = one_sentence(err)
    assert code == 2 and fragment in line and line.endswith("."), line
    assert list(tmp_path.iterdir()) == []


def test_the_merge_streams_one_chunk_at_a_time(tmp_path, monkeypatch):
    """Peak Python/numpy memory of the merge (tracemalloc) for 16 and for 64 runs in chunks of 4: the same,
    although the 48 more runs hold 16 MiB of checkpoints the old merge held all at once."""
    real, peaks = sweep_module._merge, {}

    def measured(root, cfg, *args):
        tracemalloc.start()
        try:
            return real(root, cfg, *args)
        finally:
            peaks[cfg.n_runs] = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()

    monkeypatch.setattr(sweep_module, "_merge", measured)
    for n in (16, 64):
        run_sweep(tiny(n, epochs=100, log_every=1, keep_every=1), tmp_path / str(n), chunk_size=4, workers=1, **QUIET)
    per_run = sum(a.nbytes for a in arrays(tmp_path / "64", slice(1)).values())
    assert per_run > 300_000  # 101 checkpoints of parameters and Adam moments
    assert peaks[64] < peaks[16] + 2 * 2**20, peaks
    assert peaks[64] < 64 * per_run / 2, (peaks, per_run)
    assert_identical(arrays(tmp_path / "16", slice(16)), arrays(tmp_path / "64", slice(16)))


def test_pending_chunks_are_the_gaps_between_chunk_files():
    assert sweep_module._pending_chunks([], 10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert sweep_module._pending_chunks([(0, 1), (4, 6), (9, 10)], 10, 2) == [(1, 3), (3, 4), (6, 8), (8, 9)]
    assert sweep_module._pending_chunks([(0, 10)], 10, 4) == []


# ------------------------------------------------------------------ 6. one writer at a time


def test_a_second_writer_is_refused_with_the_holders_pid_and_a_killed_holder_holds_nothing(tmp_path, capsys):
    out = tmp_path / "locked"
    code, _, err = cli([*ARGS, "--n-seeds", "4", "--out", str(out)], capsys)
    assert code == 0, err
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom grokjax.run.outdir import locked\n"
                               "with locked(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(120)", str(out)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        for argv in (["--out", str(out), "--resume", "--no-progress"], [*ARGS, "--n-seeds", "4", "--out", str(out),
                                                                          "--overwrite"]):
            code, _, err = cli(argv, capsys)
            line = one_sentence(err)
            assert code == 2 and f"being written by another process (PID {holder.pid})" in line, line
        code, _, err = run_main(llc_cli.main, [str(out), "--steps", "40", "--thin", "4", "--no-progress"], capsys)
        assert code == 2 and f"PID {holder.pid}" in one_sentence(err)
    finally:
        holder.kill()
        holder.wait()
    assert outdir.lock_path(out).exists()  # left by the killed holder; the OS released its lock
    code, stdout, err = cli(["--out", str(out), "--resume", "--no-progress"], capsys)
    assert code == 0 and "already complete" in stdout, err
    assert not outdir.lock_path(out).exists()
