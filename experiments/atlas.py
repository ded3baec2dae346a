"""The group-pair atlas: which group of K ⋊_φ Z(2) vs K × Z(2) do models prefer, over every small pair, and does a
measure of simplicity predict it?

    python experiments/atlas.py --max-order 24 --n-seeds 200 --out results/atlas       # train, then read the atlas
    python experiments/atlas.py --max-order 48 --list                                  # the pairs and their measures
    python experiments/atlas.py --pairs 'S(4)|times(A(4),Z(2))' 'twZ(48)|Z(48,2)' --n-seeds 100 --out results/two
    python experiments/figures.py results/atlas                                        # draw again from saved arrays

Every group K of the catalogue (`grokjax.problems.automorphisms.small_groups`: cyclic and other abelian groups,
dihedral, A4, S4, Q8, dicyclic, S3 x Z_m, D_n x Z_2, twZ_n) with 2|K| <= --max-order, and every automorphism φ of
K of order 2 up to conjugacy in Aut(K), gives the pair G1 = K ⋊_φ Z(2) vs G2 = K × Z(2) on the labels k + |K| h;
pairs whose groups are isomorphic are skipped (decided by an exhaustive isomorphism search). Each pair is trained
on its intersection (the default model and optimizer are the study's: MLP2 with D = H = 32, Adam lr 1e-2 with L2
2e-5, 3000 full-batch epochs); the pairs of one order are one sweep, one compiled program, in OUT/order_<N>. Run
the same command again to continue after an interruption. OUT/atlas.json and .npz hold per pair the seeds that
grokked G1, G2 or neither, G1's share with its interval, the groups' measures (order, conjugacy classes,
commutativity degree, exponent, centre, derived subgroup, irreducible degrees and their power sums) and the
intersection's size and label balance; per measure, how often the group with the smaller value wins and a logistic
regression of the seeds' choice on the difference, with bootstrap intervals over pairs.
"""

import argparse
import time

from grokjax.cli import add_config_options, add_run_options, config_from_args, draw_figures, run_cli
from grokjax.errors import UserError
from grokjax.problems import GroupPairsProblem
from grokjax.problems.automorphisms import enumerate_pairs, pairs_from_specs
from grokjax.run import runner
from grokjax.run.atlas import describe, run_atlas


def parse_pairs(texts) -> list[tuple[str, str]]:
    """'G1|G2' specs as (G1, G2)."""
    pairs = []
    for t in texts:
        if t.count("|") != 1:
            raise UserError(f"A pair is two group specs joined by '|', as in 'S(4)|times(A(4),Z(2))'; got {t!r}.")
        pairs.append(tuple(s.strip() for s in t.split("|")))
    return pairs


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--max-order", type=int, default=24, help="largest pair order |G| = 2|K| (default: 24)")
    which.add_argument("--pairs", nargs="+", metavar="G1|G2", help="explicit pairs instead of the catalogue")
    p.add_argument("--min-order", type=int, default=4, help="smallest pair order of the catalogue (default: 4)")
    p.add_argument("--k", nargs="+", metavar="SPEC", help="only these groups K (specs) instead of the catalogue")
    p.add_argument("--list", action="store_true", help="print the pairs and their measures, train nothing")
    add_config_options(p, grid=False, problem=False)
    p.add_argument("--n-seeds", type=int, default=1000, help="seeds per pair (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="base seed of the inits (default: 0)")
    add_run_options(p, None, figures=True)
    p.add_argument("--out", default=None, help="output directory (default: results/atlas-YYYYmmdd-HHMMSS)")
    a = p.parse_args(argv)
    if a.pairs:
        if a.k or a.min_order != 4:
            raise UserError("--pairs lists the pairs itself: leave out --k and --min-order.")
        pairs = pairs_from_specs(parse_pairs(a.pairs))
    else:
        pairs = [q for q in enumerate_pairs(a.max_order, a.k) if q.order >= a.min_order]
    if not pairs:
        raise UserError("No pair of groups fits these orders.")
    if a.list:
        names, arrays = describe(pairs)
        print(f"{len(pairs)} pairs")
        for i, q in enumerate(pairs):
            deltas = ", ".join(f"{k} {arrays[f'delta_{k}'][i]:+g}" for k in names if arrays[f"delta_{k}"][i])
            print(f"{q.name:<28} order {q.order:>3}  intersection {q.intersection:>5} "
                  f"({q.intersection / q.order ** 2:.2f})  G1 - G2: {deltas}")
        return
    base = config_from_args(a, problem=GroupPairsProblem(), seed=a.seed, n_seeds=a.n_seeds)
    out = a.out or time.strftime("results/atlas-%Y%m%d-%H%M%S")
    run_atlas(pairs, base, out, a.workers, not a.no_progress, runner.default_cache_dir())
    if not a.no_figures:
        draw_figures(out)


if __name__ == "__main__":
    run_cli(main)
