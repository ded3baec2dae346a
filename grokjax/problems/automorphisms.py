"""Automorphisms, isomorphism tests and the catalogue of group pairs K ⋊_φ Z(2) vs K × Z(2) (pure numpy).

The ambiguous-grokking study trains on the pairs (a, b) where two groups on shared labels agree. Every
involutive automorphism φ of a group K gives such a pair, G1 = K ⋊_φ Z(2) and G2 = K × Z(2) on labels
k + |K|*h; they agree exactly on h1 = 0 or φ(k2) = k2, i.e. on 2|K|(|K| + |Fix φ|) pairs. S(4) vs
times(A(4),Z(2)) and twZ(48) vs Z(48,2) are two such pairs; `enumerate_pairs` lists all of them for a
catalogue of small K (`small_groups`), one per class of φ under conjugation in Aut(K).

Automorphisms and isomorphisms are found the same way: a homomorphism is fixed by the images of a
generating set, so the images of the generators are chosen one at a time among the elements of the same
order and class size, and each partial choice is kept only if it extends, over a spanning tree of the
subgroup generated so far, to a well-defined injective homomorphism. All partial choices of one step are
checked at once with numpy.
"""

import math
from dataclasses import dataclass

import numpy as np

from grokjax.problems.group_structure import (
    centre_size,
    class_labels,
    derived_size,
    element_orders,
    generated_subgroup,
    identity,
)
from grokjax.problems.groups import (
    MAX_DEGREE,
    Group,
    GroupError,
    intersection_mask,
    parse_group,
)

CHUNK = 1 << 15
"""Partial maps checked at once (their (CHUNK, |G|) arrays stay a few MB)."""


def _signatures(G: Group) -> np.ndarray:
    """(order, conjugacy class size) of every element: an isomorphism preserves both."""
    labels = class_labels(G)
    return np.stack([element_orders(G), np.bincount(labels)[labels]], axis=1)


def _generators(G: Group, signatures: np.ndarray) -> list[int]:
    """A small generating set, greedily: each new generator enlarges the generated subgroup most.

    Ties go to the element whose signature is rarest (fewest candidate images), then to the smallest label.
    """
    _, inverse, counts = np.unique(signatures, axis=0, return_inverse=True, return_counts=True)
    rarity = counts[inverse.ravel()]
    # The first generator's subgroup is cyclic, its size the element's order (column 0 of the signatures).
    gens = [int(np.lexsort((np.arange(G.order), rarity, -signatures[:, 0]))[0])] if G.order > 1 else []
    subgroup = generated_subgroup(G, gens)
    while len(subgroup) < G.order:
        outside = np.setdiff1d(np.arange(G.order), subgroup)
        sizes = np.array([len(generated_subgroup(G, gens + [int(g)])) for g in outside])
        best = np.lexsort((outside, rarity[outside], -sizes))[0]
        gens.append(int(outside[best]))
        subgroup = generated_subgroup(G, gens)
    return gens


def _spanning_tree(G: Group, gens: list[int]):
    """Nodes in an order where <gens[:k]> is a prefix of length ends[k-1], with each node = parent * gens[via].

    Returns (nodes, parent, via, ends); parent and via are indexed by label.
    """
    e = identity(G)
    nodes, parent, via = [e], np.full(G.order, e), np.zeros(G.order, np.int64)
    seen = np.zeros(G.order, bool)
    seen[e] = True
    ends = []
    for k in range(len(gens)):
        i = 0
        while i < len(nodes):  # close the nodes so far under gens[:k + 1]
            for j in range(k + 1):
                x = G.table[nodes[i], gens[j]]
                if not seen[x]:
                    seen[x], parent[x], via[x] = True, nodes[i], j
                    nodes.append(x)
            i += 1
        ends.append(len(nodes))
    return np.array(nodes), parent, via, ends


def _isomorphisms(G: Group, H: Group, first: bool = False) -> np.ndarray:
    """Every isomorphism G -> H as rows of images (or at most one if `first`), in no particular order."""
    sig_g, sig_h = _signatures(G), _signatures(H)
    gens = _generators(G, sig_g)
    nodes, parent, via, ends = _spanning_tree(G, gens)
    e_h = identity(H)
    maps = np.full((1, G.order), -1, np.int64)
    maps[0, identity(G)] = e_h
    for k, g in enumerate(gens):
        candidates = np.flatnonzero((sig_h == sig_g[g]).all(axis=1))
        if not len(candidates):
            return maps[:0]
        prefix, new = nodes[:ends[k]], nodes[ends[k - 1] if k else 1:ends[k]]
        kept = []
        rows_per_chunk = max(1, CHUNK // len(candidates))
        for lo in range(0, len(maps), rows_per_chunk):
            batch = np.repeat(maps[lo:lo + rows_per_chunk], len(candidates), axis=0)
            batch[:, g] = np.tile(candidates, len(batch) // len(candidates))
            for x in new:  # extend along the spanning tree (parents come first)
                if x != g:
                    batch[:, x] = H.table[batch[:, parent[x]], batch[:, gens[via[x]]]]
            ok = (batch[:, prefix] == e_h).sum(axis=1) == 1  # trivial kernel on <gens[:k+1]>
            for s in gens[:k + 1]:  # f(x s) == f(x) f(s) for every x in the subgroup: a homomorphism
                ok &= (batch[:, G.table[prefix, s]] == H.table[batch[:, prefix], batch[:, [s]]]).all(axis=1)
            kept.append(batch[ok])
            if first and k == len(gens) - 1 and ok.any():
                return kept[-1][:1]
        maps = np.concatenate(kept)
        if not len(maps):
            break
    return maps


def automorphisms(K: Group) -> np.ndarray:
    """Every automorphism of K as a row of images, (|Aut K|, |K|), sorted lexicographically (identity first).

    Generators are mapped to elements of the same order and class size and checked as described in the
    module docstring. Every group of order <= 24 takes well under a second (the largest, Aut(Z(2,2,2,2)) =
    GL(4,2), has 20160 elements); the cost grows with |Aut K| · |K|, so Z(2,2,2,2,2) (|Aut| ≈ 10^7) is out
    of reach.
    """
    autos = _isomorphisms(K, K)
    return autos[np.lexsort(autos.T[::-1])]


def involution_classes(K: Group) -> list[np.ndarray]:
    """One automorphism of order exactly 2 per conjugacy class (ψ φ ψ^-1) of Aut(K), each the smallest of its class.

    Conjugate φ give the same pair up to relabelling (ψ × id maps K ⋊_φ Z(2) onto K ⋊_ψφψ^-1 Z(2) and
    K × Z(2) onto itself), so each class is one pair of the atlas.
    """
    autos = automorphisms(K)
    inverse = np.argsort(autos, axis=1)
    labels = np.arange(K.order)
    squares = np.take_along_axis(autos, autos, axis=1)
    involutions = autos[(squares == labels).all(axis=1) & (autos != labels).any(axis=1)]
    remaining = {row.tobytes(): row for row in involutions}
    classes = []
    for row in involutions:
        if row.tobytes() in remaining:
            classes.append(row)
            conjugates = np.take_along_axis(autos, row[inverse], axis=1)  # ψ(φ(ψ^-1(x)))
            for conjugate in np.unique(conjugates, axis=0):
                remaining.pop(conjugate.tobytes(), None)
    return classes


def _invariants(G: Group) -> tuple:
    """Isomorphism invariants that are cheap to compute: order, the sorted (element order, class size)
    signatures (so the sorted element orders and class sizes), centre size and derived subgroup size."""
    sig = _signatures(G)
    return G.order, sig[np.lexsort(sig.T[::-1])].tobytes(), centre_size(G), derived_size(G)


def are_isomorphic(G: Group, H: Group) -> bool:
    """Whether G and H are isomorphic, exactly.

    Decides on the cheap invariants when they differ (order, element orders, class sizes, centre and derived
    subgroup sizes); otherwise searches for an isomorphism, mapping a generating set of G to elements of H of
    the same order and class size (see the module docstring). The search is exhaustive, so False is a proof.
    """
    if G.order != H.order or _invariants(G) != _invariants(H):
        return False
    return len(_isomorphisms(G, H, first=True)) > 0


@dataclass(frozen=True)
class Pair:
    """Two groups of the same order on shared labels: G1 = parse_group(g1_spec), G2 = parse_group(g2_spec).

    For a pair K ⋊_φ Z(2) vs K × Z(2), `k_spec` is K's spec and `phi` the images of φ; for a pair given by its
    two specs (`pairs_from_specs`) they are "" and (). `intersection` counts the (a, b) where the tables agree.
    """

    k_spec: str
    phi: tuple[int, ...]
    g1_spec: str
    g2_spec: str
    order: int
    intersection: int
    name: str

    def groups(self) -> tuple[Group, Group]:
        """(G1, G2), built from the specs."""
        return parse_group(self.g1_spec), parse_group(self.g2_spec)


def _class_number(K: Group, phi: np.ndarray) -> int:
    """The i (from 1) of the class in involution_classes(K) that holds the involutive automorphism phi."""
    autos = automorphisms(K)
    conjugates = {row.tobytes() for row in np.take_along_axis(autos, phi[np.argsort(autos, axis=1)], axis=1)}
    return next(i for i, rep in enumerate(involution_classes(K), start=1) if rep.tobytes() in conjugates)


def _semidirect_pair(K: Group, phi, name: str | None) -> tuple[Pair, Group, Group]:
    phi = np.asarray(phi, dtype=np.int64).ravel()
    images = ",".join(map(str, phi))
    g1, g2 = parse_group(f"semi({K.name},Z(2),[{images}])"), parse_group(f"times({K.name},Z(2))")
    if (phi == np.arange(K.order)).all():
        raise GroupError(f"The map phi for {K.name} is the identity, so the two groups of the pair coincide.")
    name = name or f"{K.name}:phi{_class_number(K, phi)}"
    pair = Pair(K.name, tuple(int(x) for x in phi), g1.name, g2.name, g1.order,
                int(intersection_mask([g1, g2]).sum()), name)
    return pair, g1, g2


def semidirect_pair(k_spec: str, phi) -> Pair:
    """The pair semi(K,Z(2),[φ]) vs times(K,Z(2)) for an automorphism φ of K of order 2.

    It is named like its class in enumerate_pairs, "K:phi<i>" with i its class in involution_classes(K).
    """
    return _semidirect_pair(parse_group(k_spec), phi, None)[0]


def pairs_from_specs(specs) -> list[Pair]:
    """Pairs given explicitly as (g1_spec, g2_spec); the two groups must have the same order."""
    pairs = []
    for g1_spec, g2_spec in specs:
        g1, g2 = parse_group(g1_spec), parse_group(g2_spec)
        mask = intersection_mask([g1, g2])  # raises if the orders differ
        pairs.append(Pair("", (), g1.name, g2.name, g1.order, int(mask.sum()), f"{g1.name} vs {g2.name}"))
    return pairs


def _invariant_factors(max_order: int, factors: tuple[int, ...] = ()):
    """Every (n1, ..., nk) with 2 <= n1 | n2 | ... | nk and product <= max_order: one per abelian group."""
    if factors:
        yield factors
    step = factors[-1] if factors else 1  # the next factor is a multiple of the last
    for n in range(factors[-1] if factors else 2, max_order // math.prod(factors) + 1, step):
        yield from _invariant_factors(max_order, factors + (n,))


def small_groups(max_order: int) -> list[str]:
    """Canonical specs of groups K with 2 <= |K| <= max_order, one per isomorphism class, sorted by order.

    A list of families, not every group of each order: the abelian groups (by invariant factors: Z(n),
    Z(2,2), Z(2,4), ...), D(n) for n >= 3, A(n) for n >= 4 and S(n) for n >= 3, Q(8) and Dic(n) for n >= 3,
    times(D(3),Z(m)), times(D(n),Z(2)), and twZ(n) for 4 | n, n >= 8. A group isomorphic to an earlier one
    (in that order) is left out, e.g. S(3) for D(3) and times(D(3),Z(2)) for D(6). It holds every group of
    order <= 15, but e.g. only 9 of the 14 groups of order 16.
    """
    half, quarter, sixth = max_order // 2, max_order // 4, max_order // 6
    abelian = sorted(_invariant_factors(max_order), key=lambda f: (math.prod(f), len(f), f))
    specs = [f"Z({','.join(map(str, factors))})" for factors in abelian]
    specs += [f"D({n})" for n in range(3, half + 1)]
    specs += [f"A({n})" for n in range(4, MAX_DEGREE + 1) if math.factorial(n) // 2 <= max_order]
    specs += [f"S({n})" for n in range(3, MAX_DEGREE + 1) if math.factorial(n) <= max_order]
    specs += ["Q(8)"] * (max_order >= 8) + [f"Dic({n})" for n in range(3, quarter + 1)]
    specs += [f"times(D(3),Z({m}))" for m in range(2, sixth + 1)]
    specs += [f"times(D({n}),Z(2))" for n in range(4, quarter + 1)]
    specs += [f"twZ({n})" for n in range(8, half + 1, 4)]
    kept: dict[int, list[Group]] = {}
    for spec in specs:
        G = parse_group(spec)
        same_order = kept.setdefault(G.order, [])
        if not any(are_isomorphic(G, H) for H in same_order):
            same_order.append(G)
    return [G.name for order in sorted(kept) for G in kept[order]]


def enumerate_pairs(max_order: int, k_specs=None) -> list[Pair]:
    """Every pair K ⋊_φ Z(2) vs K × Z(2) of order 2|K| <= max_order, one per class of involutions φ of Aut(K).

    K runs over small_groups(max_order // 2), or over `k_specs` if given (each must have 2|K| <= max_order).
    Pairs whose two groups are isomorphic (e.g. φ conjugation by an involution of K) are left out. Pair i
    of K is named "K:phi<i>", i counting all of involution_classes(K) from 1; sorted by order, then K in
    catalogue (or given) order, then i.
    """
    if k_specs is None:
        k_specs = small_groups(max_order // 2)
    pairs = []
    for spec in k_specs:
        K = parse_group(spec)
        if 2 * K.order > max_order:
            raise GroupError(f"{K.name} has order {K.order}, so its pairs have order {2 * K.order} > {max_order}.")
        for i, phi in enumerate(involution_classes(K), start=1):
            pair, g1, g2 = _semidirect_pair(K, phi, f"{K.name}:phi{i}")
            if not are_isomorphic(g1, g2):
                pairs.append(pair)
    return sorted(pairs, key=lambda p: p.order)
