"""The configuration errors of the algorithm core.

A bad hyper-parameter (an unknown field, a value that cannot be coerced, a value out of its
range) is a `ConfigError`, a subclass of `SdepolicyError` whose message is one line,
so a command-line front end prints `str(error)` alone. The ranges themselves are declared
beside each config field (`sdepolicy/rl/_options.py`). The errors of datasets, environments and
runs belong to the application layer (`sdepolicy.app`).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

# The root class lives in a low module so the SDE floor's SDEInputError can subclass it without
# importing this layer; re-exported here under its usual name.
from .._errors import SdepolicyError as SdepolicyError


class ConfigError(SdepolicyError, ValueError):
    """A bad configuration value: an unknown field, a value that cannot be coerced, a bad name,
    a value out of its range. Also a `ValueError`, which is what a bad value is in Python."""


def _choices(tp: Any) -> tuple[tuple[Any, ...], bool] | None:
    """The values a `Literal[...]` (or `Literal[...] | None`) annotation allows, and whether it
    allows None; None for any other annotation."""
    optional = False
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional = len(args) < len(typing.get_args(tp))
        if len(args) != 1:
            return None
        tp = args[0]
    if typing.get_origin(tp) is not typing.Literal:
        return None
    return typing.get_args(tp), optional


def check_literal_fields(obj: Any) -> None:
    """Check every field of a dataclass annotated `Literal[...]` (or `Literal[...] | None`)
    against its choices: the one declaration of a field's names is its type.

    **Raises:**

    `ConfigError` naming the first field whose value is not one of its choices.
    """
    hints = typing.get_type_hints(type(obj))
    for field in dataclasses.fields(obj):
        choices = _choices(hints.get(field.name))
        if choices is None:
            continue
        allowed, optional = choices
        value = getattr(obj, field.name)
        if value is None and optional:
            continue
        if not any(type(value) is type(a) and value == a for a in allowed):
            names = ", ".join(map(repr, allowed))
            raise ConfigError(
                f"{type(obj).__name__}: {field.name} must be one of {names}, got {value!r}."
            )
