"""Error-function fit throughput: how long fitting every run of a large sweep takes.

    python benchmarks/fit_throughput.py                     # 10,000 runs x (train, held-out) curves of 301 logs
    python benchmarks/fit_throughput.py --runs 100000 --workers 2

The curves are synthetic noisy error functions with the shape of a 3000-epoch sweep logged every 10 epochs
(t* uniform in [300, 2500], s log-uniform in [10^-2.5, 10^-1.2] per epoch, noise 0.02, chance 1/2), two per run as
experiments/fit_curves.py fits a training and a validation curve. They go through `grokjax.run.fits.fit_curves`
exactly as a sweep's do (the runner, calls of 1024 curves, --iterations Levenberg-Marquardt steps). Printed: the
time in all, the compilation alone (the runner's own measurement) and the rest, fitting, with curves per second; and
how well the fits recover the truth (all fitted, median relative errors), so a faster setting that fits worse shows.
"""

import argparse
import time

import jax
import numpy as np

from grokjax.analysis.erf_fit import DEFAULT_ITERATIONS
from grokjax.analysis.sharpness import FITTED, erf_curve
from grokjax.run.fits import fit_curves


def synthetic(runs: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    t = np.arange(0, 3001, 10.0)
    t_star = rng.uniform(300, 2500, (runs, 2))
    s = 10 ** rng.uniform(-2.5, -1.2, (runs, 2))
    y = erf_curve(t, t_star[..., None], s[..., None], 0.5) + rng.normal(0, 0.02, (runs, 2, len(t)))
    return t, t_star, s, y.astype(np.float32)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=10_000, help="runs (two curves each) (default: %(default)s)")
    p.add_argument("--iterations", type=int, default=DEFAULT_ITERATIONS, help="(default: %(default)s)")
    p.add_argument("--workers", type=int, default=1, help="worker processes on a one-device CPU (default: %(default)s)")
    a = p.parse_args(argv)
    t, t_star, s, y = synthetic(a.runs)
    timing = {}
    t0 = time.perf_counter()
    out = fit_curves(t, y, 0.5, iterations=a.iterations, workers=a.workers, timing=timing)
    total = time.perf_counter() - t0
    fitting = total - timing["compile_seconds"]  # the runner's compile, measured by itself, taken out
    curves = y.shape[0] * y.shape[1]
    ok = out["reason"] == FITTED
    err_t = np.median(np.abs(out["t_star"][ok] / t_star[ok] - 1))
    err_s = np.median(np.abs(out["s"][ok] / s[ok] - 1))
    print(f"{a.runs:,} runs x 2 curves of {len(t)} logs, {a.iterations} iterations, on {jax.devices()[0].platform} "
          f"({a.workers} worker(s)):")
    print(f"  {total:.2f} s in all: compilation {timing['compile_seconds']:.2f} s, fitting {fitting:.2f} s "
          f"({curves / fitting:,.0f} curves/s)")
    print(f"  fitted {int(ok.sum()):,} of {curves:,}; median relative error t* {err_t:.2%}, s {err_s:.2%}")


if __name__ == "__main__":
    main()
