"""Polynomials in x and y mod p, parsed safely and evaluated on integer arrays.

A user's operation (e.g. `x**3 + x*y**2 + y`, the case Power et al. found hard) is parsed with `ast` and checked
against a strict whitelist: integer constants, the names x and y, + - *, `**` with a non-negative integer constant
exponent, unary minus and parentheses, and `/` meaning multiplication by the modular inverse (p prime). Nothing is
ever compiled or executed: the checked tree is walked by `evaluate`, which reduces mod p after every operation
(int64, square-and-multiply powers), so no value exceeds p**2 and nothing overflows for p < 2**31.
"""

import ast
from dataclasses import dataclass

import numpy as np

from grokjax.errors import UserError

MAX_LENGTH = 500  # characters; keeps parsing and the evaluator's recursion shallow
MAX_EXPONENT = 10**9
_BINARY = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow)


@dataclass(frozen=True, eq=False)
class Expression:
    """A checked expression in x and y: its source and its syntax tree (never compiled)."""

    source: str
    tree: ast.expr

    @property
    def divides(self) -> bool:
        """Whether it divides (so needs a prime modulus and is undefined where a divisor is 0)."""
        return any(isinstance(node, ast.Div) for node in ast.walk(self.tree))


def parse_expression(source: str) -> Expression:
    """The checked Expression of `source`; anything outside the whitelist is a UserError, never run."""
    if not isinstance(source, str):
        raise UserError(f"An operation must be a string, got {source!r}.")
    if len(source) > MAX_LENGTH:
        raise UserError(f"The expression is longer than {MAX_LENGTH} characters.")
    try:
        tree = ast.parse(source.strip(), mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise UserError(f"{source!r} is not an expression in x and y (allowed: integers, x, y, + - * /, ** with "
                        f"an integer exponent, parentheses).") from None
    _check(tree, source)
    return Expression(source.strip(), tree)


def _check(node: ast.AST, source: str) -> None:
    """Refuse every node outside the whitelist, naming what was found."""
    if isinstance(node, ast.Constant):
        if type(node.value) is not int:
            raise UserError(f"Only integer constants are allowed in {source!r}, found {node.value!r}.")
    elif isinstance(node, ast.Name):
        if node.id not in ("x", "y"):
            raise UserError(f"Only the variables x and y are allowed in {source!r}, found {node.id!r}.")
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        _check(node.operand, source)
    elif isinstance(node, ast.BinOp) and isinstance(node.op, _BINARY):
        _check(node.left, source)
        if isinstance(node.op, ast.Pow):
            exponent = node.right
            if not (isinstance(exponent, ast.Constant) and type(exponent.value) is int
                    and 0 <= exponent.value <= MAX_EXPONENT):
                raise UserError(f"An exponent in {source!r} must be an integer constant in [0, {MAX_EXPONENT}].")
        else:
            _check(node.right, source)
    else:
        raise UserError(f"{type(node).__name__} is not allowed in {source!r}: only integers, x, y, + - * /, ** "
                        f"with an integer exponent and parentheses are.")


def power_mod(a: np.ndarray, e: int, p: int) -> np.ndarray:
    """a**e mod p elementwise (a in 0..p-1, int64) by square and multiply; 0**0 = 1 as in Python."""
    out, base = np.ones_like(a), a
    while e:
        if e & 1:
            out = out * base % p
        base = base * base % p
        e >>= 1
    return out


def evaluate(expr: Expression, x: np.ndarray, y: np.ndarray, p: int) -> tuple[np.ndarray, np.ndarray]:
    """(values mod p, defined) of `expr` at the points (x, y), int64 in 0..p-1 and bool; a point is undefined
    where some divisor is 0 mod p (its value there is meaningless). Division uses Fermat's inverse, so p must be
    prime when the expression divides."""
    x, y = np.asarray(x, np.int64) % p, np.asarray(y, np.int64) % p
    defined = np.ones(np.broadcast(x, y).shape, bool)

    def walk(node):
        nonlocal defined
        if isinstance(node, ast.Constant):
            return np.full(defined.shape, node.value % p, np.int64)
        if isinstance(node, ast.Name):
            return np.broadcast_to(x if node.id == "x" else y, defined.shape)
        if isinstance(node, ast.UnaryOp):
            value = walk(node.operand)
            return (-value) % p if isinstance(node.op, ast.USub) else value
        left = walk(node.left)
        if isinstance(node.op, ast.Pow):
            return power_mod(left, node.right.value, p)
        right = walk(node.right)
        if isinstance(node.op, ast.Add):
            return (left + right) % p
        if isinstance(node.op, ast.Sub):
            return (left - right) % p
        if isinstance(node.op, ast.Mult):
            return left * right % p
        defined = defined & (right != 0)
        return left * power_mod(right, p - 2, p) % p

    return walk(expr.tree), defined
