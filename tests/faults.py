"""Helpers of the reliability tests that must be importable by name in spawned worker processes, and the driver
that kills a sweep at a chosen write step.

    python tests/faults.py TEXT N SIGNAL SWEEP_ARGS...

runs experiments/sweep_intersection.py with SWEEP_ARGS and sends this process SIGNAL (SIGKILL, SIGTERM) at the
N-th write step (`grokjax.run.outdir.event`) whose name contains TEXT.
"""

import os
import runpy
import signal
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "sweep_intersection.py"


def die(*args):
    """A worker target that kills its own process (as the OOM killer would)."""
    os.kill(os.getpid(), signal.SIGKILL)
    yield "never", None, None


def fail(*args):
    """A worker target whose computation fails."""
    raise MemoryError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 17179869184 bytes.")
    yield "never", None, None


def main() -> None:
    from grokjax.run import outdir

    text, nth, sig, args = sys.argv[1], int(sys.argv[2]), getattr(signal, sys.argv[3]), sys.argv[4:]
    seen = [0]

    def hook(name: str) -> None:
        if text in name:
            seen[0] += 1
            if seen[0] == nth:
                os.kill(os.getpid(), sig)

    outdir.set_event_hook(hook)
    sys.argv = [str(SCRIPT), *args]
    runpy.run_path(str(SCRIPT), run_name="__main__")


if __name__ == "__main__":
    main()
