"""User-facing errors of the offline-RL layer.

Every error a user can cause by a choice (a task name, a dataset that is not on this machine, a
missing optional extra, a bad override) is a subclass of [`SdepolicyError`][]. Its message is one
clear line that says what is wrong and what to do, so a command-line front end can print
`str(error)` alone, without a stack trace:

```python
try:
    main()
except SdepolicyError as e:
    sys.exit(f"error: {e}")
```

Bugs (broken invariants inside the library) stay ordinary exceptions and keep their traces.
"""

from __future__ import annotations

import math
from typing import Any

# The root class lives in a low module so the SDE floor's SDEInputError can subclass it without
# importing this layer; re-exported here under its usual name.
from .._errors import SdepolicyError as SdepolicyError


class DatasetNotFoundError(SdepolicyError):
    """A Minari dataset is not on this machine (and could not be downloaded)."""


class DataValidationError(SdepolicyError):
    """A dataset is malformed: non-finite values, inconsistent lengths, no transitions."""


class UnknownTaskError(SdepolicyError):
    """A task (preset) name that is not in the registry."""


class SpaceMismatchError(SdepolicyError):
    """The dataset's observation/action dimensions differ from the environment's."""


class MissingExtraError(SdepolicyError):
    """An optional dependency (a `pip install -e ".[extra]"`) is needed and not installed."""


class ConfigError(SdepolicyError, ValueError):
    """A bad configuration value: an unknown field, a value that cannot be coerced, a bad name,
    a value out of its range. Also a `ValueError`, which is what a bad value is in Python."""


class CheckpointMismatchError(SdepolicyError):
    """A checkpoint does not match the run that tries to resume from it, or is corrupt."""


class RunFolderError(SdepolicyError):
    """The output folder cannot take this run: it holds another run's outputs, another run holds
    its lock, `--resume` finds nothing to resume, or it cannot be written."""


class OutputWriteError(SdepolicyError):
    """Writing an output failed (a full disk, a folder made read-only); what was already written
    and the last checkpoint are intact."""


class TrainingDivergedError(SdepolicyError):
    """A loss, a Q value or a parameter became NaN or infinite; the run stopped at that chunk and
    kept the last good checkpoint."""

    exit_code = 3


class RunInterruptedError(SdepolicyError):
    """The run was interrupted (Ctrl-C); the message says where its last checkpoint is."""

    exit_code = 130


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


class DatasetExistsError(SdepolicyError):
    """A dataset id that is already taken, and overwriting was not asked for."""


class EnvMismatchError(SdepolicyError):
    """Stored transitions do not replay in the environment they are paired with."""


__all__ = [
    "SdepolicyError",
    "DatasetNotFoundError",
    "DataValidationError",
    "UnknownTaskError",
    "SpaceMismatchError",
    "MissingExtraError",
    "ConfigError",
    "CheckpointMismatchError",
    "RunFolderError",
    "OutputWriteError",
    "TrainingDivergedError",
    "RunInterruptedError",
    "check_config_fields",
    "DatasetExistsError",
    "EnvMismatchError",
]
