"""Reading the group-pair atlas: which group of each pair the seeds prefer, and whether a measure of simplicity
predicts it (pure numpy/scipy on per-pair counts).

Per pair, among the seeds that grokked exactly one of its two groups, the share that chose G1 (Wilson interval).
Per candidate measure m, its difference between the groups, Δ = m(G1) - m(G2), and two readings across pairs:
- *concordance*: among the pairs with a clear winner (the share's interval excludes 1/2) and Δ != 0, the fraction
  whose winner is the group with the smaller m (Wilson interval over pairs): 1 means "models always prefer the
  group with the smaller m", 0 the larger, near 1/2 no relation;
- a *logistic regression* of the seeds' choice on Δ standardised over the pairs (log-odds of G1 = a + b Δ/sd),
  fitted by Newton's method on the pooled seed counts, with a percentile bootstrap interval over pairs (pairs
  resampled whole, so the interval carries the variation between pairs, not only the binomial noise of seeds).
  A fit has no finite maximum when the measure orders the decided seeds perfectly (as when every pair has one
  winner: the slope diverges, "separates") or when every decided seed chose the same side (the intercept
  diverges, "one-sided"); either shows as a coefficient that keeps growing under further Newton steps (by more
  than `GROWTH` from `ITERATIONS` to twice as many) or reaches the bound `CLIP`, and is reported as such, never as a
  number; bootstrap draws without a finite fit are counted apart and left out of the interval.
"""

import numpy as np
from scipy.special import expit

from grokjax.analysis.outcomes import proportion

ITERATIONS = 50
GROWTH = 0.5
CLIP = 1e3
"""A standardised slope that grows by more than GROWTH between ITERATIONS and 2 ITERATIONS Newton steps diverges."""


def preference(g1_count: np.ndarray, g2_count: np.ndarray, level: float = 0.95) -> dict:
    """Per pair the share of G1 among the seeds that chose one group, with its Wilson interval (NaN if none did)."""
    rows = [proportion(int(a), int(a + b), level) if a + b else None for a, b in zip(g1_count, g2_count)]
    pick = lambda key: np.array([r[key] if r else np.nan for r in rows])
    return {"share": pick("fraction"), "ci_low": pick("ci_low"), "ci_high": pick("ci_high")}


def _logistic(x: np.ndarray, k: np.ndarray, n: np.ndarray, iterations: int = ITERATIONS) -> np.ndarray:
    """(..., 2) maximum-likelihood (a, b) of log-odds a + b x for k successes of n trials at x, batched over the
    leading axes (pairs last); Newton's method with the 2 x 2 Hessian, steps halved until the likelihood rises."""
    theta = np.zeros(x.shape[:-1] + (2,))

    def loglik(t):
        z = t[..., :1] + t[..., 1:] * x
        return np.sum(k * z - n * np.logaddexp(0, z), -1)

    for _ in range(iterations):
        z = theta[..., :1] + theta[..., 1:] * x
        p = expit(z)
        r, w = k - n * p, n * p * (1 - p)
        grad = np.stack([r.sum(-1), (r * x).sum(-1)], -1)
        h = np.stack([np.stack([w.sum(-1), (w * x).sum(-1)], -1),
                      np.stack([(w * x).sum(-1), (w * x * x).sum(-1)], -1)], -2) + 1e-9 * np.eye(2)
        step = np.linalg.solve(h, grad[..., None])[..., 0]
        before, scale = loglik(theta), np.ones(theta.shape[:-1])
        for _ in range(20):
            trial = theta + scale[..., None] * step
            worse = loglik(trial) < before - 1e-9
            if not worse.any():
                break
            scale = np.where(worse, scale / 2, scale)
        theta = np.clip(theta + scale[..., None] * step, -CLIP, CLIP)
    return theta


def measure_reading(delta: np.ndarray, g1_count: np.ndarray, g2_count: np.ndarray, n_boot: int = 2000,
                    seed: int = 0, level: float = 0.95) -> dict:
    """Concordance and logistic slope of one measure's differences `delta` (pairs,) against the seeds' choices (see
    the module). Pairs where no seed chose a group are left out; a constant measure has no slope (NaN)."""
    delta, k, n = np.asarray(delta, float), np.asarray(g1_count, float), np.asarray(g1_count + g2_count, float)
    keep = n > 0
    delta, k, n = delta[keep], k[keep], n[keep]
    share = preference(k, n - k, level)
    clear = (share["ci_low"] > 0.5) | (share["ci_high"] < 0.5)
    counted = clear & (delta != 0)
    simpler_won = np.sum(counted & ((share["share"] > 0.5) == (delta < 0)))
    out = {"n_pairs": int(keep.sum()), "n_clear": int(clear.sum()), "n_counted": int(counted.sum()),
           "concordance": proportion(int(simpler_won), int(counted.sum()), level) if counted.any() else None}
    none = {"slope": np.nan, "slope_ci": [np.nan, np.nan], "fit": None, "unfit_fraction": np.nan}
    if len(delta) < 2 or delta.std() == 0:
        return {**out, **none}
    x = delta / delta.std()
    slope, fit = _slope(x[None], k[None], n[None])
    draws = np.random.default_rng(seed).integers(0, len(x), (n_boot, len(x)))
    boot, boot_fit = _slope(x[draws], k[draws], n[draws])
    usable = np.std(x[draws], -1) > 0  # a draw of one repeated difference has no slope
    finite = boot[usable & (boot_fit == "finite")]
    tail = (1 - level) / 2
    ci = np.quantile(finite, [tail, 1 - tail]).tolist() if len(finite) else [np.nan, np.nan]
    unfit = float(np.mean(boot_fit[usable] != "finite")) if usable.any() else np.nan
    if fit[0] == "separates":
        fit = "separates: the smaller value wins" if slope[0] < 0 else "separates: the larger value wins"
        return {**out, **none, "fit": fit, "unfit_fraction": unfit}
    if fit[0] == "one-sided":
        return {**out, **none, "fit": "one-sided: every decided seed chose the same group", "unfit_fraction": unfit}
    return {**out, "slope": float(slope[0]), "slope_ci": ci, "fit": "finite", "unfit_fraction": unfit}


def _slope(x, k, n) -> tuple[np.ndarray, np.ndarray]:
    """The fitted standardised slopes and their kind of fit: "finite", "separates" (the slope diverges) or
    "one-sided" (the intercept does), see the module."""
    short, long = _logistic(x, k, n), _logistic(x, k, n, 2 * ITERATIONS)
    diverges = (np.abs(long) - np.abs(short) > GROWTH) | (np.abs(long) >= CLIP)
    kind = np.where(diverges[..., 1], "separates", np.where(diverges[..., 0], "one-sided", "finite"))
    return long[..., 1], kind


def atlas_lines(pairs: list[dict], readings: dict) -> list[str]:
    """The atlas as text: per pair the outcome and G1's share, then per measure its concordance and slope."""
    lines = [f"{'pair':<40} {'order':>5} {'inter':>6} {'seeds':>6} {'G1':>6} {'G2':>6} {'none':>6}  G1 share [CI]"]
    for p in pairs:
        share = "-" if np.isnan(p["share"]) else f"{p['share']:.3f} [{p['ci_low']:.3f}, {p['ci_high']:.3f}]"
        lines.append(f"{p['name']:<40} {p['order']:>5} {p['intersection']:>6} {p['n_seeds']:>6} {p['g1']:>6} "
                     f"{p['g2']:>6} {p['none']:>6}  {share}")
    lines.append("")
    lines.append(f"{'measure (G1 - G2)':<22} {'pairs':>5} {'clear':>5}  smaller wins [CI]       slope per sd [CI]")
    for name, r in readings.items():
        c = r["concordance"]
        conc = "-" if c is None else f"{c['count']}/{r['n_counted']} [{c['ci_low']:.2f}, {c['ci_high']:.2f}]"
        if r["fit"] is None:
            slope = "-"
        elif r["fit"] != "finite":
            slope = r["fit"]
        else:
            slope = f"{r['slope']:+.2f} [{r['slope_ci'][0]:+.2f}, {r['slope_ci'][1]:+.2f}]"
        if r["fit"] is not None and r["unfit_fraction"] > 0:
            slope += f" (no finite fit in {100 * r['unfit_fraction']:.1f}% of draws)"
        lines.append(f"{name:<22} {r['n_pairs']:>5} {r['n_clear']:>5}  {conc:<22} {slope}")
    return lines
