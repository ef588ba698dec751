"""The configuration errors of the algorithm core.

A bad hyper-parameter (an unknown field, a value that cannot be coerced, a value out of its
range) is a [`ConfigError`][], a subclass of [`SdepolicyError`][] whose message is one line,
so a command-line front end prints `str(error)` alone. The errors of datasets, environments and
runs belong to the application layer (`sdepolicy.app`).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any

# The root class lives in a low module so the SDE floor's SDEInputError can subclass it without
# importing this layer; re-exported here under its usual name.
from .._errors import SdepolicyError as SdepolicyError


class ConfigError(SdepolicyError, ValueError):
    """A bad configuration value: an unknown field, a value that cannot be coerced, a bad name,
    a value out of its range. Also a `ValueError`, which is what a bad value is in Python."""


# Field name -> (what is allowed, test). A field is checked only where a config has it, so one
# table serves every agent config; the tests run on already-coerced values.
_FINITE = lambda v: isinstance(v, int | float) and math.isfinite(v)
# Fields where None means "the default of another field" (critic_hidden: hidden).
_OPTIONAL_FIELDS = frozenset({"critic_hidden"})
_FIELD_RULES: dict[str, tuple[str, Any]] = {
    "diffusion_steps": ("an integer >= 1", lambda v: v >= 1),
    "num_critics": ("an integer >= 1", lambda v: v >= 1),
    "hidden": ("an integer >= 1", lambda v: v >= 1),
    "critic_hidden": ("None or an integer >= 1", lambda v: v >= 1),
    "batch_size": ("an integer >= 1", lambda v: v >= 1),
    "eval_candidates": ("an integer >= 1", lambda v: v >= 1),
    "eval_temperature": ("a finite temperature >= 0", lambda v: _FINITE(v) and v >= 0.0),
    "max_q_samples": ("an integer >= 1", lambda v: v >= 1),
    "ema_every": ("an integer >= 1", lambda v: v >= 1),
    "ema_start": ("an integer >= 0", lambda v: v >= 0),
    "lr_decay_every": ("an integer >= 1", lambda v: v >= 1),
    "lr_decay_t_max": ("an integer >= 1", lambda v: v >= 1),
    "gamma": ("a discount in [0, 1)", lambda v: _FINITE(v) and 0.0 <= v < 1.0),
    "tau": ("a Polyak rate in (0, 1]", lambda v: _FINITE(v) and 0.0 < v <= 1.0),
    "ema_decay": ("in [0, 1]", lambda v: _FINITE(v) and 0.0 <= v <= 1.0),
    "actor_lr": ("a finite learning rate > 0", lambda v: _FINITE(v) and v > 0.0),
    "critic_lr": ("a finite learning rate > 0", lambda v: _FINITE(v) and v > 0.0),
    "lr": ("a finite learning rate > 0", lambda v: _FINITE(v) and v > 0.0),
    "grad_norm": ("finite and >= 0 (0: no clipping)", lambda v: _FINITE(v) and v >= 0.0),
    "lcb_beta": ("finite and >= 0", lambda v: _FINITE(v) and v >= 0.0),
    "alpha": ("finite and >= 0", lambda v: _FINITE(v) and v >= 0.0),
    "eta": ("finite and >= 0", lambda v: _FINITE(v) and v >= 0.0),
    "critic_diversity": ("finite and >= 0", lambda v: _FINITE(v) and v >= 0.0),
    "critic_conservatism": ("finite and >= 0", lambda v: _FINITE(v) and v >= 0.0),
    "beta_min": ("finite and > 0", lambda v: _FINITE(v) and v > 0.0),
    "beta_max": ("finite and > 0", lambda v: _FINITE(v) and v > 0.0),
}


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

    [`ConfigError`][] naming the first field whose value is not one of its choices.
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


def check_config_fields(config: Any) -> None:
    """Check the numeric fields of an agent config against their ranges (a learning rate is
    positive and finite, a discount lies in [0, 1), a width is at least 1, ...).

    Called by the agent configs' `__post_init__`, so a bad `--set` value is refused when the
    config is built, before any data is read or code compiled. The `Literal` fields are checked
    first ([`check_literal_fields`][]).

    **Arguments:**

    - `config`: a dataclass instance; fields it lacks are not checked.

    **Raises:**

    [`ConfigError`][] naming the first field out of range, its value and what is allowed.
    """
    check_literal_fields(config)
    name = type(config).__name__
    for field, (allowed, ok) in _FIELD_RULES.items():
        if not hasattr(config, field):
            continue
        value = getattr(config, field)
        if value is None and field in _OPTIONAL_FIELDS:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not ok(value):
            raise ConfigError(f"{name}: {field} must be {allowed}, got {value!r}.")
