"""Finite groups as Cayley tables on labels 0..N-1, and a small spec language to name them.

A group is an (N, N) int32 table with `table[i, j]` = label of g_i * g_j. Several
groups can share the same labels (e.g. S(4) and times(A(4),Z(2))); grokking
experiments train on the pairs where their tables agree. Everything here is
pure numpy; every Group is validated (closure, identity, inverses,
associativity) when it is created, and every bad input raises a GroupError
whose message is one sentence.
"""

import itertools
import math
import re
from dataclasses import dataclass, field

import numpy as np

from grokjax.errors import UserError
from grokjax.problems.group_structure import identity, inverses

MAX_ORDER = 10_000  # a 10,000-element table already has 10^8 pairs
MAX_DEGREE = 7  # S(7) has 5040 elements; A(8) and S(8) exceed MAX_ORDER
MAX_NESTING = 32


class GroupError(UserError):
    """A group spec, table file or construction that does not describe a valid group."""


@dataclass(frozen=True, eq=False)
class Group:
    """A finite group: its canonical spec string and its validated, read-only Cayley table."""

    name: str
    table: np.ndarray = field(repr=False)

    def __post_init__(self):
        table = validate_table(self.table, self.name)
        table.flags.writeable = False
        object.__setattr__(self, "table", table)

    @property
    def order(self) -> int:
        return self.table.shape[0]


def _check_order(name: str, order: int) -> None:
    if order > MAX_ORDER:
        raise GroupError(f"{name} has {order} elements; at most {MAX_ORDER} are supported.")


def _check_size(name: str, n, minimum: int = 1) -> int:
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < minimum:
        raise GroupError(f"{name} is not a group: its size must be an integer of at least {minimum}.")
    return int(n)


# ---------------------------------------------------------------- validation


def _fail_associative(label: str, a, b, c):
    raise GroupError(f"{label} is not associative: ({a}*{b})*{c} != {a}*({b}*{c}).")


def _check_rows_latin(t: np.ndarray, inv: np.ndarray, label: str) -> None:
    """Fail unless every row is a permutation, turning a repeat into an associativity witness.

    If a*b == a*c with b != c, then (a'*a)*x = x for x in {b, c} while a'*(a*b) == a'*(a*c),
    so b or c breaks associativity. Rows being permutations bounds the cost of
    _check_associative; columns need no check, since a table that passes is a group.
    """
    bad = np.concatenate([_repeats(t[rows]) + rows.start for rows in _blocks(len(t))])
    if bad.size:
        a = int(bad[0])
        values, counts = np.unique(t[a], return_counts=True)
        b, c = (int(x) for x in np.flatnonzero(t[a] == values[counts > 1][0])[:2])
        _fail_associative(label, inv[a], a, b if t[inv[a], t[a, b]] != b else c)


def _repeats(lines: np.ndarray) -> np.ndarray:
    """Indices of the rows of `lines` (entries in 0..N-1) that are not permutations."""
    seen = np.zeros(lines.shape, bool)
    seen[np.arange(len(lines))[:, None], lines] = True
    return np.flatnonzero(~seen.all(axis=1))


def _blocks(n: int, size: int = 256):
    """Row slices that keep N x N work cache-sized (several times faster than whole-table gathers)."""
    return [slice(start, min(start + size, n)) for start in range(0, n, size)]


def _check_associative(t: np.ndarray, e: int, label: str) -> None:
    """Light's test: the elements g with (a*g)*c == a*(g*c) for all a, c are closed under products.

    So it suffices to test a generating set, grown greedily: each new generator is
    checked (an N x N comparison) and then everything reachable from the identity by
    right-multiplying by generators is marked. The marked set is a finite, associative,
    left-cancellative monoid, i.e. a group, so each accepted generator at least doubles
    it and this costs O(N^2 log N) instead of O(N^3).
    """
    reached = np.zeros(len(t), bool)
    reached[e] = True
    gens = []
    while not reached.all():
        g = int(np.argmin(reached))
        for rows in _blocks(len(t)):
            bad = t[t[rows, g]] != t[rows][:, t[g]]  # [a, c]: (a*g)*c vs a*(g*c)
            if bad.any():
                a, c = np.argwhere(bad)[0]
                _fail_associative(label, a + rows.start, g, c)
        gens.append(g)
        frontier = np.flatnonzero(reached)
        while frontier.size:
            new = np.unique(t[np.ix_(frontier, gens)])
            frontier = new[~reached[new]]
            reached[frontier] = True


def validate_table(table, name: str) -> np.ndarray:
    """Return `table` as a fresh int32 array if it is a group's Cayley table, else raise GroupError.

    Checks, in order: a non-empty square integer array, closure (entries in 0..N-1),
    a two-sided identity, two-sided inverses, and associativity; the message names
    the first failing axiom with a witness.
    """
    label = f"Table {name!r}"
    try:
        t = np.asarray(table)
    except (ValueError, TypeError):
        raise GroupError(f"{label} is not a rectangular array.") from None
    if not np.issubdtype(t.dtype, np.integer):
        raise GroupError(f"{label} must hold integers, not {t.dtype}.")
    if t.ndim != 2 or t.shape[0] != t.shape[1] or t.shape[0] == 0:
        raise GroupError(f"{label} must be a non-empty square 2-D array, not one of shape {t.shape}.")
    n = t.shape[0]
    _check_order(label, n)
    outside = (t < 0) | (t >= n)
    if outside.any():
        a, b = np.argwhere(outside)[0]
        raise GroupError(f"{label} is not closed: entry [{a}, {b}] is {t[a, b]}, outside 0..{n - 1}.")
    t = np.array(t, dtype=np.int32)
    labels = np.arange(n)
    identities = np.flatnonzero((t == labels).all(axis=1) & (t == labels[:, None]).all(axis=0))
    if not identities.size:
        raise GroupError(f"{label} has no two-sided identity element.")
    e = int(identities[0])
    unit = t == e
    inverse = unit & unit.T
    missing = np.flatnonzero(~inverse.any(axis=1))
    if missing.size:
        raise GroupError(f"{label} has no two-sided inverse for element {missing[0]}.")
    _check_rows_latin(t, np.argmax(inverse, axis=1), label)
    _check_associative(t, e, label)
    return t


# ---------------------------------------------------------------- constructors


def cyclic(n: int) -> Group:
    """Z(n): labels x = 0..n-1, product (x + y) mod n."""
    n = _check_size(f"Z({n})", n)
    _check_order(f"Z({n})", n)
    x = np.arange(n, dtype=np.int32)
    return Group(f"Z({n})", (x[:, None] + x[None, :]) % n)


def direct_product(*groups: Group, name: str | None = None) -> Group:
    """times(G, H, ...): label g + |G|*h (first factor least significant), componentwise product.

    At least two factors are required, as in the spec language.
    """
    if len(groups) < 2:
        raise GroupError(f"A direct product needs at least two groups, got {len(groups)}.")
    name = name or f"times({','.join(g.name for g in groups)})"
    _check_order(name, math.prod(g.order for g in groups))
    table = groups[0].table
    for h in groups[1:]:
        n, m = len(table), h.order
        table = (table[None, :, None, :] + n * h.table[:, None, :, None]).reshape(n * m, n * m)
    return Group(name, table)


def cyclic_product(*ns: int) -> Group:
    """Z(a, b, ...): the direct product of cyclic groups, labelled like direct_product ((x, h) <-> x + a*h)."""
    name = f"Z({','.join(str(n) for n in ns)})"
    if not ns:
        raise GroupError("Z needs at least one size.")
    for n in ns:
        _check_size(name, n)
    _check_order(name, math.prod(ns))  # before building any factor
    if len(ns) == 1:
        return cyclic(ns[0])
    return direct_product(*(cyclic(n) for n in ns), name=name)


def _permutation_group(name: str, perms: np.ndarray) -> Group:
    """The group of the given permutations (rows, as tuples of images) under (p*q)(x) = p(q(x)).

    A permutation is keyed by its base-n code; the product of all pairs is built
    one image position at a time, P[:, P[:, k]][i, j] = p_i(p_j(k)), then looked up.
    """
    count, n = perms.shape
    weights = n ** np.arange(n - 1, -1, -1, dtype=np.int32)
    lookup = np.zeros(n**n, dtype=np.int32)
    lookup[perms @ weights] = np.arange(count)
    codes = np.zeros((count, count), dtype=np.int32)
    for k in range(n):
        codes += perms[:, perms[:, k]] * weights[k]
    return Group(name, lookup[codes])


def _even_permutations(n: int) -> np.ndarray:
    """The even permutations of 0..n-1 in lexicographic order (the identity first)."""
    perms = list(itertools.permutations(range(n)))
    perms = np.array(perms, dtype=np.int32).reshape(len(perms), n)
    i, j = np.triu_indices(n, 1)
    return perms[(perms[:, i] > perms[:, j]).sum(axis=1) % 2 == 0]


def _check_degree(name: str, n: int) -> int:
    n = _check_size(name, n, minimum=0)
    if n > MAX_DEGREE:
        raise GroupError(f"{name} is too large: only degrees up to {MAX_DEGREE} are supported ({MAX_DEGREE}! = "
                         f"{math.factorial(MAX_DEGREE)} elements).")
    return n


def alternating(n: int) -> Group:
    """A(n): the even permutations of 0..n-1, labelled in lexicographic order, (p*q)(x) = p(q(x))."""
    n = _check_degree(f"A({n})", n)
    return _permutation_group(f"A({n})", _even_permutations(n))


def symmetric(n: int) -> Group:
    """S(n): label k + |A(n)|*h is a_k ∘ τ^h, with a_k the k-th element of A(n) and τ = (0 1).

    This labelling makes S(n) and times(A(n),Z(2)) agree exactly on the pairs
    with h1 = 0 or τ commuting with a2. S(0) and S(1) are trivial.
    """
    n = _check_degree(f"S({n})", n)
    even = _even_permutations(n)
    if n < 2:
        return _permutation_group(f"S({n})", even)
    swapped = even.copy()
    swapped[:, [0, 1]] = even[:, [1, 0]]  # (a ∘ τ)(x) = a(τ(x))
    return _permutation_group(f"S({n})", np.concatenate([even, swapped]))


def _automorphism_order(K: Group, phi: np.ndarray, name: str) -> int:
    """The order of phi as a permutation, after checking that it is an automorphism of K."""
    what = f"The map phi of {name}"
    if phi.shape != (K.order,) or not np.issubdtype(phi.dtype, np.integer):
        raise GroupError(f"{what} must list one integer image for each of the {K.order} elements of {K.name}.")
    if ((phi < 0) | (phi >= K.order)).any() or len(np.unique(phi)) != K.order:
        raise GroupError(f"{what} is not an automorphism of {K.name}: it is not a bijection of 0..{K.order - 1}.")
    bad = K.table[phi[:, None], phi[None, :]] != phi[K.table]
    if bad.any():
        a, b = np.argwhere(bad)[0]
        raise GroupError(f"{what} is not an automorphism of {K.name}: phi({a}*{b}) != phi({a})*phi({b}).")
    cycle_lengths, seen = [], np.zeros(K.order, bool)
    for start in range(K.order):
        length, x = 0, start
        while not seen[x]:
            seen[x], x, length = True, phi[x], length + 1
        if length:
            cycle_lengths.append(length)
    return math.lcm(*cycle_lengths)


def semidirect(K: Group, m: int, phi, name: str | None = None) -> Group:
    """K ⋊_φ Z(m): label k + |K|*h, product (k1, h1)(k2, h2) = (k1 * φ^h1(k2), (h1 + h2) mod m).

    `phi[k]` is the image of label k; it must be an automorphism of K with φ^m = id.
    """
    phi = np.asarray(phi)
    name = name or f"semi({K.name},Z({m}),[{','.join(str(x) for x in phi.ravel())}])"
    m = _check_size(name, m)
    _check_order(name, K.order * m)
    order = _automorphism_order(K, phi, name)
    if m % order:
        raise GroupError(f"The map phi of {name} has order {order}, which does not divide {m}.")
    n = K.order
    powers = [np.arange(n)]
    for _ in range(m - 1):
        powers.append(phi[powers[-1]])
    powers = np.stack(powers)  # powers[h, k] = φ^h(k)
    h1 = np.arange(m)[:, None, None, None]
    k1 = np.arange(n)[None, :, None, None]
    h2 = np.arange(m)[None, None, :, None]
    k2 = np.arange(n)[None, None, None, :]
    table = K.table[k1, powers[h1, k2]] + n * ((h1 + h2) % m)
    return Group(name, table.reshape(n * m, n * m))


def dihedral(n: int) -> Group:
    """D(n): the 2n symmetries of the regular n-gon (order 2n), Z(n) ⋊ Z(2) with φ(x) = -x, labels x + n*h."""
    n = _check_size(f"D({n})", n)
    return semidirect(cyclic(n), 2, (-np.arange(n)) % n, name=f"D({n})")


def twisted_cyclic(n: int) -> Group:
    """twZ(n): Z(n) ⋊ Z(2) with φ(x) = (n/2 + 1)·x mod n, labels x + n*h; needs 4 | n.

    Only then is φ an automorphism with φ^2 = id ((n/2 + 1)^2 = n^2/4 + n + 1 ≡ 1 mod n).
    """
    n = _check_size(f"twZ({n})", n)
    if n % 4:
        raise GroupError(f"twZ({n}) is undefined: x -> (n/2 + 1)x is an automorphism of order dividing 2 "
                         f"only when 4 divides n.")
    return semidirect(cyclic(n), 2, ((n // 2 + 1) * np.arange(n)) % n, name=f"twZ({n})")


def dicyclic(n: int) -> Group:
    """Dic(n): the dicyclic group of order 4n (n >= 2), <a, x | a^2n = 1, x^2 = a^n, x a x^-1 = a^-1>.

    Label k + 2n*j is a^k x^j, so (a^k1 x^j1)(a^k2 x^j2) = a^(k1 + (-1)^j1 k2 + n j1 j2) x^(j1 xor j2).
    Its only involution is a^n (label n); Dic(2) is the quaternion group Q(8).
    """
    name = f"Dic({n})"
    n = _check_size(name, n)
    if n < 2:
        raise GroupError(f"{name} is undefined: the dicyclic group Dic(n) needs n >= 2 (Dic(1) would be Z(4)).")
    _check_order(name, 4 * n)
    k1, j1, k2, j2 = np.ix_(np.arange(2 * n), [0, 1], np.arange(2 * n), [0, 1])
    k = (k1 + (1 - 2 * j1) * k2 + n * j1 * j2) % (2 * n)
    table = k + 2 * n * (j1 ^ j2)  # [k1, j1, k2, j2]
    return Group(name, table.transpose(1, 0, 3, 2).reshape(4 * n, 4 * n))


def quaternion(m: int) -> Group:
    """Q(8): the quaternion group {±1, ±i, ±j, ±k}, spelled with its order; the same table as Dic(2)."""
    if m != 8:
        raise GroupError(f"Q({m}) is undefined: only Q(8) is supported; write Dic(n) for the dicyclic group "
                         f"of order 4n.")
    return Group("Q(8)", dicyclic(2).table)


def power_map(K: Group, p: int) -> np.ndarray:
    """The map k -> k^p (k composed with itself p times in K; negative p uses inverses) as an image array."""
    e = identity(K)
    base = np.arange(K.order) if p >= 0 else inverses(K)
    result, p = np.full(K.order, e), abs(p)
    while p:
        if p & 1:
            result = K.table[result, base]
        base, p = K.table[base, base], p >> 1
    return result


def _read_npy(path: str) -> np.ndarray:
    try:
        data = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise GroupError(f"Table file {path!r} does not exist.") from None
    except (OSError, ValueError, EOFError):
        raise GroupError(f"Table file {path!r} is not a readable .npy array.") from None
    if not isinstance(data, np.ndarray):
        data.close()
        raise GroupError(f"Table file {path!r} holds several arrays; expected a single .npy table.")
    return data


def load_table(path) -> np.ndarray:
    """A validated int32 Cayley table from a .npy file."""
    return validate_table(_read_npy(str(path)), str(path))


def intersection_mask(groups) -> np.ndarray:
    """(N, N) bool mask of the pairs on which all `groups` (on shared labels) have the same product."""
    groups = list(groups)
    if not groups:
        raise GroupError("At least one group is needed.")
    first = groups[0]
    mask = np.ones((first.order, first.order), bool)
    for g in groups[1:]:
        if g.order != first.order:
            raise GroupError(f"Groups {first.name} (order {first.order}) and {g.name} (order {g.order}) have "
                             f"different orders; they must share labels.")
        mask &= g.table == first.table
    return mask


# ---------------------------------------------------------------- spec language
#
#   group := NAME '(' arg (',' arg)* ')' | PATH ending in .npy
#   arg   := group | INT | '[' INT (',' INT)* ']' | STRING ('...' or "...")
#
# Tokenised with one regex and parsed by recursive descent; no part of a spec is run as Python.

_TOKEN = re.compile(r"""(?P<punct>[()\[\],])|(?P<string>"[^"]*"|'[^']*')|(?P<word>[^\s()\[\],'"]+)""")
_SPACE = re.compile(r"\s*")
_INT = re.compile(r"-?\d+")
_CYCLIC_NAME = re.compile(r"Z\((\d+)\)")


def _quote(path: str) -> str:
    return f"'{path}'" if '"' in path else f'"{path}"'


class _Parser:
    def __init__(self, spec: str):
        self.spec, self.tokens, self.i = spec, [], 0
        pos = _SPACE.match(spec).end()
        while pos < len(spec):
            match = _TOKEN.match(spec, pos)
            if not match:
                self.fail(f"Unterminated string at position {pos}")
            self.tokens.append((match.lastgroup, match.group()))
            pos = _SPACE.match(spec, match.end()).end()

    def fail(self, message: str, hint: str = ""):
        raise GroupError(f"{message} in {self.spec!r}{hint}.")

    def peek(self) -> str | None:
        return self.tokens[self.i][1] if self.i < len(self.tokens) else None

    def take(self, expected: str) -> tuple[str, str]:
        if self.i == len(self.tokens):
            raise GroupError(f"The spec {self.spec!r} ends early; expected {expected}.")
        self.i += 1
        return self.tokens[self.i - 1]

    def expect(self, text: str) -> None:
        kind, got = self.take(repr(text))
        if kind != "punct" or got != text:
            self.fail(f"Expected {text!r} but found {got!r}")

    def parse(self) -> Group:
        if not self.tokens:
            raise GroupError("The group spec is empty; expected something like 'Z(97)' or 'times(A(4),Z(2))'.")
        group = self.group(0)
        if self.i < len(self.tokens):
            self.fail(f"Unexpected {self.peek()!r} after the end of the group")
        return group

    def group(self, depth: int) -> Group:
        if depth > MAX_NESTING:
            self.fail(f"Groups are nested more than {MAX_NESTING} deep")
        kind, word = self.take("a group")
        if kind == "word" and word.endswith(".npy"):
            return _npy(self, [word])
        if kind != "word" or self.peek() != "(":
            if word in _BUILDERS:
                self.fail(f"Expected '(' after {word!r}")
            self.fail(f"Expected a group such as Z(97) but found {word!r}")
        if word not in _BUILDERS:
            self.fail(f"Unknown group {word!r}", f"; expected one of {', '.join(_BUILDERS)}")
        self.expect("(")
        args = [self.arg(depth)]
        while self.peek() == ",":
            self.i += 1
            args.append(self.arg(depth))
        self.expect(")")
        return _BUILDERS[word](self, args)

    def arg(self, depth: int):
        if self.peek() == "[":
            self.i += 1
            values = [self.integer()]
            while self.peek() == ",":
                self.i += 1
                values.append(self.integer())
            self.expect("]")
            return values
        if self.i < len(self.tokens) and self.tokens[self.i][0] == "string":
            self.i += 1
            return self.tokens[self.i - 1][1][1:-1]
        if self.i < len(self.tokens) and _INT.fullmatch(self.tokens[self.i][1]):
            return self.integer()
        return self.group(depth + 1)

    def integer(self) -> int:
        kind, word = self.take("an integer")
        if kind != "word" or not _INT.fullmatch(word):
            self.fail(f"Expected an integer but found {word!r}")
        if len(word) > 18:
            self.fail(f"The number {word} is too large")
        return int(word)

    def sizes(self, name: str, args, many: bool = False, example: int = 5) -> list[int]:
        if (not many and len(args) != 1) or not all(isinstance(a, int) for a in args):
            self.fail(f"{name} takes {'positive integers' if many else 'one positive integer'}",
                      f", as in {name}({example})")
        if min(args) < 1:
            self.fail(f"Sizes must be positive integers, not {min(args)}")
        return args


def _npy(parser: _Parser, args) -> Group:
    if len(args) != 1 or not isinstance(args[0], str):
        parser.fail("npy takes one quoted path", ", as in npy(\"table.npy\")")
    return Group(f"npy({_quote(args[0])})", _read_npy(args[0]))


def _times(parser: _Parser, args) -> Group:
    if len(args) < 2 or not all(isinstance(a, Group) for a in args):
        parser.fail("times takes two or more groups", ", as in times(A(4),Z(2))")
    return direct_product(*args)


def _semi(parser: _Parser, args) -> Group:
    usage = ("semi takes a group, a cyclic group Z(m) and phi (a power p or a list of images)",
             ", as in semi(Z(7),Z(3),2)")
    if len(args) != 3 or not isinstance(args[0], Group) or not isinstance(args[1], Group):
        parser.fail(*usage)
    K, C, phi = args
    m = _CYCLIC_NAME.fullmatch(C.name)
    if not m or not isinstance(phi, (int, list)):
        parser.fail(*usage)
    phi_text = str(phi) if isinstance(phi, int) else f"[{','.join(map(str, phi))}]"
    images = power_map(K, phi) if isinstance(phi, int) else np.array(phi, dtype=np.int64)
    return semidirect(K, int(m.group(1)), images, name=f"semi({K.name},{C.name},{phi_text})")


_BUILDERS = {
    "Z": lambda p, args: cyclic_product(*p.sizes("Z", args, many=True)),
    "S": lambda p, args: symmetric(*p.sizes("S", args)),
    "A": lambda p, args: alternating(*p.sizes("A", args)),
    "D": lambda p, args: dihedral(*p.sizes("D", args)),
    "twZ": lambda p, args: twisted_cyclic(*p.sizes("twZ", args)),
    "Dic": lambda p, args: dicyclic(*p.sizes("Dic", args)),
    "Q": lambda p, args: quaternion(*p.sizes("Q", args, example=8)),
    "times": _times,
    "semi": _semi,
    "npy": _npy,
}


def parse_group(spec: str) -> Group:
    """Build the group named by `spec`, e.g. "Z(97)", "times(A(4),Z(2))", "semi(Z(7),Z(3),2)" or "tables/g.npy".

    Families: Z(a,b,...), A(n), S(n), D(n), twZ(n), Dic(n), Q(8), times(G,H,...), semi(K,Z(m),p or [images])
    and npy("path").

    Group.name of the result is the canonical spelling of the spec (no spaces).
    """
    if not isinstance(spec, str):
        raise GroupError(f"A group spec must be a string, not {type(spec).__name__}.")
    return _Parser(spec).parse()
