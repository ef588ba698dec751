"""The configuration errors of the algorithm core.

A bad hyper-parameter (an unknown field, a value that cannot be coerced, a value out of its
range) is a [`ConfigError`][], a subclass of [`SdepolicyError`][] whose message is one line,
so a command-line front end prints `str(error)` alone. The errors of datasets, environments and
runs belong to the application layer (`sdepolicy.app`).
"""

from __future__ import annotations

import math
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
    "beta_min": ("finite and > 0", lambda v: _FINITE(v) and v > 0.0),
    "beta_max": ("finite and > 0", lambda v: _FINITE(v) and v > 0.0),
}


def check_config_fields(config: Any) -> None:
    """Check the numeric fields of an agent config against their ranges (a learning rate is
    positive and finite, a discount lies in [0, 1), a width is at least 1, ...).

    Called by the agent configs' `__post_init__`, so a bad `--set` value is refused when the
    config is built, before any data is read or code compiled.

    **Arguments:**

    - `config`: a dataclass instance; fields it lacks are not checked.

    **Raises:**

    [`ConfigError`][] naming the first field out of range, its value and what is allowed.
    """
    name = type(config).__name__
    for field, (allowed, ok) in _FIELD_RULES.items():
        if not hasattr(config, field):
            continue
        value = getattr(config, field)
        if value is None and field in _OPTIONAL_FIELDS:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not ok(value):
            raise ConfigError(f"{name}: {field} must be {allowed}, got {value!r}.")
