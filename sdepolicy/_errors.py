"""The root of the package's user-facing errors, low enough for every layer to import.

`SdepolicyError` lives here, not in `sdepolicy.rl`, so that the SDE floor's
`SDEInputError` can subclass it without importing upwards (imports point down:
`sdepolicy.sde` must not import `sdepolicy.rl`). `sdepolicy.rl` and `sdepolicy.app` re-export it
under the same name, so `from sdepolicy.app import SdepolicyError` works and one
`except SdepolicyError` catches bad input to either layer.
"""

from __future__ import annotations


class SdepolicyError(Exception):
    """Base class of the errors whose message is meant for the user, on one line.

    `exit_code` is what a command-line front end exits with: 2 for a bad input or setting (the
    default), 3 for a run that failed while training (`TrainingDivergedError`), 130 for an
    interrupted one (the shell's convention for Ctrl-C).
    """

    exit_code = 2

    def __init__(self, message: str):
        # One line by construction: a CLI prints the message alone.
        super().__init__(" ".join(str(message).split()))
