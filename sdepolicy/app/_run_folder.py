"""The output folder of a run: its lock, what counts as a run's output, writing into it, and
cleaning up after a failed run."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pathlib
import tempfile

from ._checkpoint import read_header
from ._errors import OutputWriteError, RunFolderError, SdepolicyError

CHECKPOINT = "checkpoint.eqx"
#: Every file a run writes; a folder holding any of them holds a run.
OUTPUTS = (CHECKPOINT, "metrics.csv", "summary.json", "learning_curve.png")


def outputs_in(out: pathlib.Path) -> list[str]:
    return [n for n in OUTPUTS if (out / n).exists()] if out.is_dir() else []


class RunLock:
    """The run's hold on its output folder: refuses a folder that holds another run (any of its
    outputs, not only the checkpoint), a `--resume` with nothing to resume, a folder that cannot
    be written (found before any work), and takes an exclusive `flock` on `out/.lock` so that a
    second run on the same folder fails at once."""

    def __init__(self, out: pathlib.Path, resume: bool):
        self.out, self.resume = out, resume
        self.fd: int | None = None
        self.fresh = False  # set once this run owns the folder's outputs

    def __enter__(self) -> RunLock:
        out = self.out
        if out.exists() and not out.is_dir():
            raise RunFolderError(f"--out {out} is a file, not a folder; choose another --out.")
        if self.resume and not (out / CHECKPOINT).is_file():
            found = outputs_in(out)
            if found:
                raise RunFolderError(
                    f"--resume: {out} holds {', '.join(found)} but no {CHECKPOINT} (that run "
                    "stopped before its first checkpoint), so there is nothing to resume; start "
                    "a new run in another --out."
                )
            what = "is an empty folder" if out.is_dir() else "does not exist"
            raise RunFolderError(
                f"--resume: there is no run to resume in {out} (it {what}); check the path, or "
                "leave out --resume to start a new run."
            )
        try:
            out.mkdir(parents=True, exist_ok=True)
            # A real write, not os.access: permission bits say nothing for root or a read-only
            # file system.
            fd, probe = tempfile.mkstemp(dir=out, prefix=".write-test-")
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            raise RunFolderError(
                f"cannot write into --out {out}: {e.strerror or e}; choose another --out."
            ) from None
        self.fd = os.open(out / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            self.fd = None
            raise RunFolderError(
                f"another run is using {out} (it holds {out / '.lock'}); wait for it to finish "
                "or choose another --out."
            ) from None
        try:
            os.ftruncate(self.fd, 0)
            os.write(self.fd, f"{os.getpid()}\n".encode())
            found = outputs_in(out)
            if not self.resume and found:
                if CHECKPOINT in found:
                    hint = "pass --resume to continue it, or choose another --out"
                else:
                    hint = (
                        f"it has no {CHECKPOINT}, so it cannot be resumed; choose another --out "
                        "or delete the folder"
                    )
                raise RunFolderError(
                    f"{out} already holds a run ({', '.join(found)}); {hint}. Nothing was "
                    "overwritten."
                )
        except BaseException:
            self._release()
            raise
        self.fresh = not self.resume
        return self

    def _release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
            self.released = True

    def __exit__(self, *exc) -> None:
        self._release()


def clean_failed(out: pathlib.Path, existed: bool, lock: RunLock) -> None:
    """After a failure: a new run that wrote no checkpoint leaves nothing behind (so the same
    command can be run again); a folder this run created is removed if it is left empty."""
    if lock.fresh and not (out / CHECKPOINT).exists():
        for name in OUTPUTS:
            (out / name).unlink(missing_ok=True)
    if not existed and getattr(lock, "released", False):
        (out / ".lock").unlink(missing_ok=True)
        try:
            out.rmdir()
        except OSError:
            pass


def checkpoint_note(out: pathlib.Path, resume_hint: bool = True) -> str:
    path = out / CHECKPOINT
    try:
        step = read_header(path)["step"]
    except (OSError, SdepolicyError, KeyError, TypeError):
        return "no checkpoint was written, so there is nothing to resume"
    note = f"the last checkpoint is {path} (step {step})"
    return note + (": continue with the same command and --resume" if resume_hint else "")


@contextlib.contextmanager
def writing(path: pathlib.Path, out: pathlib.Path):
    """An `OSError` while writing an output (a full disk, a folder made read-only) becomes one
    line naming the file and the intact last checkpoint."""
    try:
        yield
    except OSError as e:
        raise OutputWriteError(
            f"could not write {path}: {e.strerror or e}. {checkpoint_note(out)}."
        ) from None
