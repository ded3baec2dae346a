"""The group-pair atlas: every pair trained on its intersection, one sweep per order, and the seeds' preferences
read against candidate measures of simplicity.

`run_atlas` groups the pairs by order; the pairs of one order are one sweep (`GroupPairsProblem`: the pair is a
grid axis, so they are one compiled program) in OUT/order_<N>, resumed when it exists, so the command run again
continues where it stopped. Then, per pair, from its sweep's seeds.npz: how many seeds grokked G1 only, G2 only,
neither (or diverged), G1's share of the decided seeds with its interval, and the measures of both groups
(`grokjax.analysis.group_measures`) with their differences and the intersection's size and label balance; per
measure, the concordance and logistic slope of `grokjax.analysis.atlas`; and per pair the final weight norms of
the two solutions, read against the preference (`atlas.efficiency_reading`). Written to OUT/atlas.json (the table
and readings) and OUT/atlas.npz (the arrays the figures draw).
"""

import dataclasses
from collections import defaultdict
from pathlib import Path

import numpy as np

from grokjax.analysis import atlas
from grokjax.analysis.group_measures import group_measures, label_balance
from grokjax.problems import GroupPairsProblem
from grokjax.run import storage
from grokjax.run.outdir import guard, locked, write_together
from grokjax.run.results import read_npz
from grokjax.run.specs import SweepConfig
from grokjax.run.sweep import run_stage

PAIR_MEASURES = ("intersection_share", "normalized_entropy", "min_max_ratio")
"""Properties of a pair's intersection (not differences): its share of the table and its label balance."""


def order_configs(pairs, base: SweepConfig) -> dict[int, SweepConfig]:
    """One sweep config per order: `base` (model, optimizer, schedule, seeds) on that order's pairs."""
    by_order = defaultdict(list)
    for p in pairs:
        by_order[p.order].append(p)
    return {n: _with_pairs(base, ps) for n, ps in sorted(by_order.items())}


def _with_pairs(base: SweepConfig, pairs) -> SweepConfig:
    problem = GroupPairsProblem(g1=tuple(p.g1_spec for p in pairs), g2=tuple(p.g2_spec for p in pairs))
    return dataclasses.replace(base, problem=problem)


def pair_counts(root: Path, n_pairs: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per pair of the sweep in `root`: seeds that grokked G1 only, G2 only, neither, both, and diverged; and the
    final weight norms of the G1-only seeds against the G2-only seeds' (`atlas.norm_by_solution`)."""
    seeds = read_npz(root / "seeds.npz", ("variant", "grokked", "diverged", "final_weight_norm"))
    variant = seeds["variant"].astype(int)
    grok, bad = seeds["grokked"].astype(bool), seeds["diverged"].astype(bool)
    g1, g2 = grok[:, 0] & ~grok[:, 1], grok[:, 1] & ~grok[:, 0]
    count = lambda mask: np.bincount(variant[mask & ~bad], minlength=n_pairs)
    counts = {"g1": count(g1), "g2": count(g2), "none": count(~grok[:, 0] & ~grok[:, 1]),
              "both": count(grok[:, 0] & grok[:, 1]), "diverged": np.bincount(variant[bad], minlength=n_pairs)}
    choice = np.where(bad, 0, np.where(g1, 1, np.where(g2, 2, 0)))
    return counts, atlas.norm_by_solution(seeds["final_weight_norm"], variant, choice, n_pairs)


def describe(pairs) -> tuple[list[str], dict[str, np.ndarray]]:
    """The measure differences G1 - G2 (names, and arrays over pairs) and the pair measures of every pair."""
    rows = []
    for p in pairs:
        g1, g2 = p.groups()
        m1, m2, balance = group_measures(g1), group_measures(g2), label_balance(g1, g2)
        rows.append(({k: m1[k] - m2[k] for k in m1}, m1, m2,
                     {"intersection_share": p.intersection / p.order ** 2,
                      "normalized_entropy": balance["normalized_entropy"], "min_max_ratio": balance["min_max_ratio"]}))
    names = list(rows[0][0])
    arrays = {f"delta_{k}": np.array([r[0][k] for r in rows]) for k in names}
    arrays.update({f"g1_{k}": np.array([r[1][k] for r in rows]) for k in names})
    arrays.update({f"g2_{k}": np.array([r[2][k] for r in rows]) for k in names})
    arrays.update({k: np.array([r[3][k] for r in rows]) for k in PAIR_MEASURES})
    return names, arrays


def run_atlas(pairs, base: SweepConfig, out, workers: int = 0, progress: bool = True, cache_dir=None,
              log=print) -> dict:
    """Train every order's sweep (resuming), then read and write the atlas (see the module); returns atlas.json."""
    out = Path(out)
    configs = order_configs(pairs, base)
    for order, cfg in configs.items():
        log(f"order {order}: {cfg.problem.n_variants} pairs x {cfg.n_seeds} seeds -> {out / f'order_{order}'}")
        run_stage(cfg, out / f"order_{order}", progress=progress, workers=workers, log=log, cache_dir=cache_dir)
    ordered = sorted(pairs, key=lambda p: p.order)  # the order of the sweeps and, within one, of the grid
    counts, norms = defaultdict(list), defaultdict(list)
    for order, cfg in configs.items():
        order_counts, order_norms = pair_counts(out / f"order_{order}", cfg.problem.n_variants)
        for gathered, got in ((counts, order_counts), (norms, order_norms)):
            for k, v in got.items():
                gathered[k].append(v)
    counts, norms = ({k: np.concatenate(v) for k, v in d.items()} for d in (counts, norms))
    names, arrays = describe(ordered)
    share = atlas.preference(counts["g1"], counts["g2"])
    readings = {k: atlas.measure_reading(arrays[f"delta_{k}"], counts["g1"], counts["g2"]) for k in names}
    efficiency = atlas.efficiency_reading(share, norms)
    grokked = counts["g1"] + counts["g2"] + counts["both"]
    finite = grokked + counts["none"]
    table = [{"name": p.name, "g1_spec": p.g1_spec, "g2_spec": p.g2_spec, "order": p.order, "intersection": p.intersection,
              "k": p.k_spec, "n_seeds": int(finite[i] + counts["diverged"][i]),
              **{k: int(counts[k][i]) for k in ("g1", "g2", "none", "both", "diverged")},
              "grokked_fraction": float(grokked[i] / finite[i]) if finite[i] else None,
              **{k: float(share[k][i]) for k in ("share", "ci_low", "ci_high")},
              **{k: float(v[i]) for k, v in norms.items()},
              **{k: float(arrays[k][i]) for k in PAIR_MEASURES}}
             for i, p in enumerate(ordered)]
    summary = _plain({"pairs": table, "readings": readings, "efficiency": efficiency, "measures": names,
                      "pair_measures": list(PAIR_MEASURES),
                      "config": {k: v for k, v in base.to_dict().items() if k != "problem"},
                      "environment": storage.environment()})
    npz = {"name": np.array([p.name for p in ordered]), "order": np.array([p.order for p in ordered]),
           **{f"count_{k}": v for k, v in counts.items()}, **share, **norms, **arrays}
    with guard(lambda: "the sweeps are kept: run the same command again"), locked(out):
        write_together({out / "atlas.json": lambda path: storage.write_json(path, summary),
                        out / "atlas.npz": lambda path: storage.write_arrays(path, npz)})
    log("\n".join(atlas.atlas_lines(table, readings, efficiency)))
    return summary


def _plain(x):
    """JSON-ready copy: numpy scalars as Python numbers, NaN and infinities as None (strict JSON has neither)."""
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return None if not np.isfinite(x) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x
