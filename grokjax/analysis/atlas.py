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

And the circuit-efficiency question (Varma et al.) across the atlas: in a pair where both solutions occur, is the
preferred one the one with the smaller weight norm? Per pair, the final weight norms of the seeds that grokked G1
only against those of the seeds that grokked G2 only (at least `MIN_SEEDS` each): the probability that a G1 seed
has the smaller norm (a rank statistic: the norms of one solution often sit in several modes, where a median
jumps between them) with the two-sided Mann-Whitney test of it (the norm order is clear when p < 0.05; exact for
small samples) and the ratio of the medians, each with a percentile bootstrap interval (seeds resampled within
each solution; descriptive); across pairs the concordance: among the pairs with a clear winner and a clear norm
order, the fraction whose winner tends to the smaller norm.
"""

import numpy as np
from scipy.special import expit
from scipy.stats import mannwhitneyu, rankdata

from grokjax.analysis.outcomes import proportion

ITERATIONS = 50
GROWTH = 0.5
CLIP = 1e3
"""A standardised slope that grows by more than GROWTH between ITERATIONS and 2 ITERATIONS Newton steps diverges."""
MIN_SEEDS = 5
"""The fewest seeds of one solution whose norms are compared with the other's."""


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


def smaller_probability(g1: np.ndarray, g2: np.ndarray) -> np.ndarray:
    """P(a G1 value < a G2 value) + P(equal) / 2 along the last axis of each (the Mann-Whitney U of G2 over
    n1 n2), from midranks of the pooled values; batched over the leading axes."""
    n1, n2 = g1.shape[-1], g2.shape[-1]
    ranks = rankdata(np.concatenate([g1, g2], -1), axis=-1)
    return (ranks[..., n1:].sum(-1) - n2 * (n2 + 1) / 2) / (n1 * n2)


def norm_by_solution(norm: np.ndarray, variant: np.ndarray, choice: np.ndarray, n_pairs: int, n_boot: int = 2000,
                     seed: int = 0, level: float = 0.95) -> dict:
    """Per pair (`variant` of each seed), comparing the `norm`s of the seeds whose `choice` is 1 (grokked G1 only)
    with those whose choice is 2 (G2 only), when each has at least `MIN_SEEDS`: the probability that a G1 seed has
    the smaller norm (`smaller_probability`, robust to norms that cluster in several modes) with the two-sided
    Mann-Whitney p-value of it, the medians and their ratio G1 / G2 (the size of the difference), each with a
    percentile bootstrap interval (each solution's seeds resampled apart). NaN where a solution has too few seeds."""
    rng = np.random.default_rng(seed)
    keys = ("g1_smaller", "norm_ratio")
    out = {k: np.full(n_pairs, np.nan) for k in ("norm_g1", "norm_g2", "g1_smaller_p") + keys
           + tuple(f"{k}_{e}" for k in keys for e in ("low", "high"))}
    tail = (1 - level) / 2
    for v in range(n_pairs):  # a few hundred pairs at most; the bootstrap within one is vectorised
        g1, g2 = (norm[(variant == v) & (choice == c) & np.isfinite(norm)] for c in (1, 2))
        if min(len(g1), len(g2)) < MIN_SEEDS:
            continue
        b1, b2 = (g[rng.integers(0, len(g), (n_boot, len(g)))] for g in (g1, g2))
        out["norm_g1"][v], out["norm_g2"][v] = np.median(g1), np.median(g2)
        out["g1_smaller_p"][v] = mannwhitneyu(g1, g2, alternative="two-sided").pvalue
        for key, value, boot in (("g1_smaller", smaller_probability(g1, g2), smaller_probability(b1, b2)),
                                 ("norm_ratio", np.median(g1) / np.median(g2),
                                  np.median(b1, -1) / np.median(b2, -1))):
            out[key][v] = value
            out[f"{key}_low"][v], out[f"{key}_high"][v] = np.quantile(boot, [tail, 1 - tail])
    return out


def efficiency_reading(share: dict, norms: dict, level: float = 0.95) -> dict:
    """Across pairs, whether the preferred solution is the one with the smaller norm (`share` of `preference`,
    `norms` of `norm_by_solution`): the pairs compared (both solutions seen), those with a clear winner, those
    with a clear norm order too (Mann-Whitney p below 1 - `level`: counted), and the fraction of the counted pairs
    whose winner tends to the smaller norm (Wilson interval; pairs that share their K are not independent)."""
    compared = np.isfinite(norms["g1_smaller"])
    winner = compared & ((share["ci_low"] > 0.5) | (share["ci_high"] < 0.5))
    counted = winner & (norms["g1_smaller_p"] < 1 - level)
    smaller_won = counted & ((share["share"] > 0.5) == (norms["g1_smaller"] > 0.5))
    return {"n_compared": int(compared.sum()), "n_clear": int(winner.sum()), "n_counted": int(counted.sum()),
            "counted": np.flatnonzero(counted).tolist(),
            "concordance": proportion(int(smaller_won.sum()), int(counted.sum()), level) if counted.any() else None}


def atlas_lines(pairs: list[dict], readings: dict, efficiency: dict | None = None) -> list[str]:
    """The atlas as text: per pair the outcome and G1's share, then per measure its concordance and slope, and the
    `efficiency` reading (`efficiency_reading`) if given."""
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
    if efficiency is not None:
        lines += ["", _efficiency_line(pairs, efficiency)]
    return lines


def _efficiency_line(pairs: list[dict], r: dict) -> str:
    """The efficiency reading in words, then every compared pair (* marks the counted ones)."""
    c = r["concordance"]
    head = (f"final weight norms of G1-only against G2-only seeds (both seen {MIN_SEEDS}+ times in {r['n_compared']} "
            f"pairs, {r['n_clear']} with a clear winner, {r['n_counted']} with a clear norm order too)")
    if c is None:
        return head + ": no pair to count"
    rows = [f" {'*' if i in r['counted'] else ' '} {p['name']:<40} G1 share {p['share']:.3f}, "
            f"P(G1 norm smaller) {p['g1_smaller']:.2f} [{p['g1_smaller_low']:.2f}, {p['g1_smaller_high']:.2f}] "
            f"(p {p['g1_smaller_p']:.1g}), "
            f"median ratio {p['norm_ratio']:.3f} [{p['norm_ratio_low']:.3f}, {p['norm_ratio_high']:.3f}]"
            for i, p in enumerate(pairs) if p.get("g1_smaller") is not None and np.isfinite(p["g1_smaller"])]
    return "\n".join([f"{head}: the winner tends to the smaller norm in {c['count']}/{r['n_counted']} "
                      f"[{c['ci_low']:.2f}, {c['ci_high']:.2f}]"] + rows)
