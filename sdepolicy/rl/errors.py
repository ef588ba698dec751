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


class SdepolicyError(Exception):
    """Base class of the errors whose message is meant for the user, on one line."""

    def __init__(self, message: str):
        # One line by construction: a CLI prints the message alone.
        super().__init__(" ".join(str(message).split()))


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


class ConfigError(SdepolicyError):
    """A bad configuration value: an unknown field, a value that cannot be coerced, a bad name."""


class CheckpointMismatchError(SdepolicyError):
    """A checkpoint does not match the run that tries to resume from it."""


__all__ = [
    "SdepolicyError",
    "DatasetNotFoundError",
    "DataValidationError",
    "UnknownTaskError",
    "SpaceMismatchError",
    "MissingExtraError",
    "ConfigError",
    "CheckpointMismatchError",
]
