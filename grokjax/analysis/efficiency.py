"""Circuit efficiency (Varma et al., "Explaining grokking through circuit efficiency"): the parameter norm a circuit
needs, per training-set size D, and the critical size D_crit where the memorizing and generalizing curves cross.

A circuit that produces the same logits with a smaller parameter norm is the more *efficient* one. We measure, at
the end of training, per run: the parameter norm |θ| (L2 over the weights), the train loss and the mean
correct-class logit margin m (true logit minus the largest other, averaged over the training points). The paper's
efficiency is the norm a circuit needs to reach a fixed train loss. For a model whose logits are homogeneous of
degree L in its weights (no biases, ReLU: scaling θ by c scales every logit by c^L; `homogeneity()` of the model
spec), that is exact from one end state: the norm at which the run's function reaches the mean margin
`TARGET_MARGIN` is |θ| (TARGET_MARGIN / m)^(1/L) (`norm_at_margin`; smaller: more efficient), whatever loss the
optimizer settled at (under Adam the end point is set by its epsilon as much as by the decay). For other models
the norm at the end of training is used, which is the paper's reading only at convergence under weight decay.

- The memorizing circuit: runs trained on random labels (a fixed permutation of the table's labels), which can
  only memorize; its norm grows with D.
- The generalizing circuit: runs on the true labels that generalized (held-out accuracy at least a threshold at
  the end); its norm does not depend on D. Sizes where no run generalized have no generalizing value.

D_crit is the smallest D at which the memorizing curve (mean norm over seeds, linear between grid sizes) reaches
the generalizing one; its interval is a percentile bootstrap over seeds (resampling each size's runs of each
circuit independently), from scipy.stats. NaN where the curves do not cross inside the grid, and no interval
when fewer than two runs generalized.
"""

import numpy as np
from scipy.stats import bootstrap

N_RESAMPLES = 2000
TARGET_MARGIN = 10.0
"""The fixed mean logit margin at which homogeneous models' norms are compared (D_crit does not depend on it: it
scales every norm by the same factor)."""


def norm_at_margin(norm, margin, degree: int, target: float = TARGET_MARGIN) -> np.ndarray:
    """The parameter norm at which a model homogeneous of `degree` in its weights, now at norm `norm` with mean
    logit margin `margin`, reaches the mean margin `target` along its own direction; NaN where the margin is not
    positive (the run does not fit its training set on average)."""
    norm, margin = np.asarray(norm, float), np.asarray(margin, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(margin > 0, norm * (target / margin) ** (1.0 / degree), np.nan)


def crossing(sizes: np.ndarray, memorizing: np.ndarray, generalizing: np.ndarray) -> float:
    """The smallest D where `memorizing` - `generalizing` (per size, both increasing in index with `sizes`) turns
    from negative to non-negative, linear between sizes; NaN if it never does or a value is missing there. The
    generalizing curve is taken as its mean over the sizes that have one (it does not depend on D), so sizes where
    no run generalized do not break the curve."""
    sizes, mem = np.asarray(sizes, float), np.asarray(memorizing, float)
    gen = np.nanmean(np.asarray(generalizing, float)) if np.isfinite(generalizing).any() else np.nan
    gap = mem - gen
    for i in range(len(sizes)):
        if not np.isfinite(gap[i]):
            return np.nan
        if gap[i] >= 0:
            if i == 0:
                return float(sizes[0]) if gap[0] == 0 else np.nan  # already above at the smallest size
            t = -gap[i - 1] / (gap[i] - gap[i - 1])
            return float(sizes[i - 1] + t * (sizes[i] - sizes[i - 1]))
    return np.nan


def per_size_means(values: np.ndarray, size_index: np.ndarray, n_sizes: int, keep=None) -> np.ndarray:
    """(n_sizes,) mean of `values` over the runs of each size (`size_index`), only the runs where `keep`; NaN
    where a size has none."""
    keep = np.ones(len(values), bool) if keep is None else np.asarray(keep, bool)
    out = np.full(n_sizes, np.nan)
    for s in range(n_sizes):
        at = keep & (size_index == s) & np.isfinite(values)
        if at.any():
            out[s] = values[at].mean()
    return out


def d_crit(sizes, mem_norm, mem_size, gen_norm, gen_size, level: float = 0.95, seed: int = 0) -> dict:
    """D_crit from per-run norms (`mem_*`: the memorizing runs, `gen_*`: the generalizing runs, each with its
    size index into `sizes`) and its bootstrap interval over seeds (see the module)."""
    sizes = np.asarray(sizes, float)
    n = len(sizes)
    mem_norm, gen_norm = np.asarray(mem_norm, float), np.asarray(gen_norm, float)
    mem_size, gen_size = np.asarray(mem_size), np.asarray(gen_size)
    point = crossing(sizes, per_size_means(mem_norm, mem_size, n), per_size_means(gen_norm, gen_size, n))
    rng = np.random.default_rng(seed)

    def resample(values, index):
        """One bootstrap draw: each size's runs resampled with replacement."""
        out_v, out_i = [], []
        for s in range(n):
            at = np.flatnonzero(index == s)
            if len(at):
                out_v.append(values[rng.choice(at, len(at))])
                out_i.append(np.full(len(at), s))
        return (np.concatenate(out_v), np.concatenate(out_i)) if out_v else (values[:0], index[:0])

    draws = np.array([crossing(sizes, per_size_means(*resample(mem_norm, mem_size), n),
                               per_size_means(*resample(gen_norm, gen_size), n)) for _ in range(N_RESAMPLES)])
    finite = draws[np.isfinite(draws)]
    alpha = (1 - level) / 2
    low, high = (np.quantile(finite, [alpha, 1 - alpha]) if len(finite) else (np.nan, np.nan))
    if np.sum(np.isfinite(gen_norm)) < 2:  # one generalizing run: resampling it cannot show its spread
        low, high = np.nan, np.nan
    return {"d_crit": point, "ci_low": float(low), "ci_high": float(high), "level": level,
            "crossed_fraction": float(len(finite) / N_RESAMPLES)}


def mean_interval(values, level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """(mean, low, high) of finite `values` with a percentile bootstrap interval; NaNs with fewer than two."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if len(v) < 2:
        return (float(v.mean()) if len(v) else np.nan), np.nan, np.nan
    res = bootstrap((v,), np.mean, n_resamples=N_RESAMPLES, confidence_level=level, method="percentile",
                    random_state=np.random.default_rng(seed))
    return float(v.mean()), float(res.confidence_interval.low), float(res.confidence_interval.high)
