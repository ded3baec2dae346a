"""Typed, tagged specs: frozen dataclasses that are saved as JSON dicts and read back exactly.

A spec with a `kind` (a problem, a model) is saved as `{"kind": ..., field: value, ...}` and read back through
the registry of its family; tuples are saved as lists and restored as tuples, nested specs recursively. Unknown
fields are refused with one sentence, so results never load into a silently different config; a missing field
takes its default (so a field added later, with a default that keeps the old behaviour, reads old results).
"""

import dataclasses
import typing

from grokjax.errors import UserError


class Spec:
    """Mixin of the frozen dataclasses that describe a run; `kind` (a ClassVar) tags members of a registry."""

    def to_dict(self) -> dict:
        out = {"kind": self.kind} if hasattr(self, "kind") else {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.to_dict() if isinstance(value, Spec) else list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, d: dict, what: str = "config"):
        """The spec saved by `to_dict`; a missing or unknown field is a UserError naming it."""
        if not isinstance(d, dict):
            raise UserError(f"The {what} is not a JSON object.")
        names = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k != "kind" or k in names}
        unknown = sorted(d.keys() - names)
        if unknown:
            raise UserError(f"The {what} has unknown fields: {', '.join(unknown)}.")
        hints = typing.get_type_hints(cls)
        values = {}
        for name, value in d.items():
            hint = hints[name]
            if isinstance(hint, type) and issubclass(hint, Spec):
                value = hint.from_dict(value, f"{what}'s {name}")
            elif typing.get_origin(hint) is tuple or (isinstance(value, list) and any(
                    typing.get_origin(h) is tuple for h in typing.get_args(hint))):  # a tuple, or e.g. int | tuple
                value = tuple(value)
            elif hint is float and isinstance(value, int):
                value = float(value)
            values[name] = value
        return cls(**values)


def from_registry(registry: dict, d: dict, family: str):
    """The spec of `family` (e.g. 'problem') saved as `d`, through its registry of kinds."""
    kind = d.get("kind") if isinstance(d, dict) else None
    if kind not in registry:
        raise UserError(f"Unknown {family} kind {kind!r}; expected one of {', '.join(registry)}.")
    return registry[kind].from_dict(d, f"{family} spec")
