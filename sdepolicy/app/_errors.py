"""User-facing errors of the application layer: datasets, environments, checkpoints, runs.

Every error a user can cause by a choice (a task name, a dataset that is not on this machine, a
missing optional extra, an output folder that holds another run) is a subclass of
`SdepolicyError`. Its message is one clear line that says what is wrong and what to do, so
a command-line front end can print `str(error)` alone, without a stack trace:

```python
try:
    main()
except SdepolicyError as e:
    sys.exit(f"error: {e}")
```

Bad hyper-parameters are the core's `ConfigError` (re-exported here). Bugs (broken
invariants inside the library) stay ordinary exceptions and keep their traces.
"""

from __future__ import annotations

from ..rl._errors import ConfigError as ConfigError
from ..rl._errors import SdepolicyError as SdepolicyError
from ..rl._errors import check_literal_fields as check_literal_fields


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


class RunTerminatedError(RunInterruptedError):
    """The run was terminated (SIGTERM, as `kill` or a batch scheduler sends it); handled like
    Ctrl-C: the message says where its last checkpoint is."""

    exit_code = 143


class BackendError(SdepolicyError):
    """JAX cannot start the platform it is asked for (`JAX_PLATFORMS`)."""


class DatasetExistsError(SdepolicyError):
    """A dataset id that is already taken, and overwriting was not asked for."""


class EnvMismatchError(SdepolicyError):
    """Stored transitions do not replay in the environment they are paired with."""
