"""Bit-identity with the engine before problems, models and the runner were separated (commit 25e871e).

tests/data/golden_s4_16x300.npz was written by that commit's code: the default config (S(4) vs A(4) x Z(2),
MLP2 D = H = 32, Adam with L2 2e-5, full batch) at 16 seeds x 300 epochs, and 4 seeds with checkpoints every
150 epochs. Today's sweep must give the same arrays, bit for bit.
"""

from pathlib import Path

import numpy as np
import pytest

from grokjax.run.specs import SweepConfig
from grokjax.run.storage import load_params, read_arrays
from grokjax.run.sweep import run_sweep
from grokjax.train import Schedule

GOLDEN = Path(__file__).parent / "data" / "golden_s4_16x300.npz"


def collect(root: Path, prefix: str) -> dict:
    out = {}
    for name in ("traces", "seeds"):
        out.update({f"{prefix}{name}/{k}": v for k, v in read_arrays(root / f"{name}.npz").items()})
    for part in ("params", "checkpoints"):
        if (root / part).exists():
            out.update({f"{prefix}{part}/{k}": v for k, v in load_params(root / part).items()})
    return out


@pytest.mark.parametrize("prefix,n_seeds,keep_every", [("plain/", 16, 0), ("kept/", 4, 150)])
def test_default_sweep_is_bit_identical_to_the_engine_before_the_refactor(tmp_path, prefix, n_seeds, keep_every):
    cfg = SweepConfig(n_seeds=n_seeds, seeds_per_call=8, schedule=Schedule(length=300, keep_every=keep_every))
    run_sweep(cfg, tmp_path / "run", workers=1, progress=False, log=lambda *_: None, cache_dir=None)
    with np.load(GOLDEN) as golden:
        want = {k: golden[k] for k in golden.files if k.startswith(prefix)}
    got = collect(tmp_path / "run", prefix)
    got = {k: v for k, v in got.items() if k in want or not k.startswith(f"{prefix}traces/checkpoint_fit")}
    assert want.keys() <= got.keys()
    for k in want:
        assert got[k].dtype == want[k].dtype and np.array_equal(got[k], want[k]), k
