"""How a config's problems are told: `file: dotted.path: message` with the fix, a "did you mean"
for typos, and the file (or --set) that set each value. Every problem at once, in one ConfigError.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel, ValidationError

from raytrain.config.schema import ExperimentConfig
from raytrain.errors import UserError


class ConfigError(UserError):
    """A config that cannot be used. `problems` holds one `file: path: message` line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def fields_at(loc: tuple) -> dict:
    """The schema fields of the section at `loc` (e.g. ("search", "scheduler")); {} if not a section."""
    model: Any = ExperimentConfig
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None:
            return {}
        candidates = get_args(field.annotation) or (field.annotation,)  # unwraps `X | None`
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if model is None:
            return {}
    return model.model_fields


def describe_errors(err: ValidationError, origins: dict[str, str], path: Path) -> list[str]:
    problems = []
    for e in err.errors():
        dotted = ".".join(str(p) for p in e["loc"])
        problems.append(f"{origin_of(dotted, origins, path)}: {dotted or '(top level)'}: {error_message(e)}")
    return problems


def origin_of(dotted: str, origins: dict[str, str], default: Path) -> str:
    """The file (or --set) that set this path, or the one that set its closest parent."""
    probe = dotted
    while probe:
        if probe in origins:
            return origins[probe]
        probe = probe.rpartition(".")[0]
    return str(default)


_FIX_FOR_TYPE = {
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "int_parsing": "must be a whole number",
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "string_type": "must be text",
    "model_type": "must be a mapping of keys",
    "model_attributes_type": "must be a mapping of keys",
    "dict_type": "must be a mapping",
}


MAX_ECHO_CHARS = 80  # a wrong value quoted back: enough to recognise it, never the whole of a huge one


def echo(value) -> str:
    """`value` as a message quotes it, cut to MAX_ECHO_CHARS."""
    text = repr(value)
    return text if len(text) <= MAX_ECHO_CHARS else f"{text[: MAX_ECHO_CHARS - 1]}… ({len(text)} characters)"


def error_message(e: dict) -> str:
    kind, ctx, got = e["type"], e.get("ctx", {}), echo(e.get("input"))
    if kind == "extra_forbidden":
        return _unknown_key_message(e["loc"])
    if kind == "missing":
        return "required"
    bounds = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
    if kind in bounds:
        limit = next(iter(ctx.values()))
        return f"must be {bounds[kind]} {limit}, got {got}"
    if kind == "literal_error":
        choices = ctx.get("expected", "")
        hint = closest(str(e.get("input")), [c.strip(" '") for c in choices.replace(" or ", ", ").split(",")])
        return f"must be one of {choices}, got {got}" + (f"; did you mean {hint!r}?" if hint else "")
    if kind == "value_error":
        return str(ctx.get("error", e["msg"]))
    if kind in _FIX_FOR_TYPE:
        return f"{_FIX_FOR_TYPE[kind]}, got {got}"
    return f"{e['msg'][0].lower()}{e['msg'][1:]}, got {got}"


def closest(name: str, candidates) -> str | None:
    """The known name a typo most likely meant: a close spelling, or one it abbreviates."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    if close:
        return close[0]
    prefixed = [c for c in candidates if len(name) >= 3 and c.startswith(name)]
    return prefixed[0] if len(prefixed) == 1 else None


def _unknown_key_message(loc: tuple) -> str:
    *parents, key = [str(p) for p in loc]
    names = sorted(fields_at(tuple(parents)) | ({"extends": None} if not parents else {}))
    hint = closest(key, names)
    if hint:
        return f"unknown key; did you mean {hint!r} instead of {key!r}?"
    return f"unknown key {key!r}; known keys here: {', '.join(names)}"
