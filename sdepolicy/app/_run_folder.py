"""The output folder of a run: its lock, what counts as a run's output, writing into it, and
cleaning up after a failed run."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import pathlib
import stat
import sys
import tempfile

from ._checkpoint import file_mode, read_header
from ._errors import OutputWriteError, RunFolderError, SdepolicyError

CHECKPOINT = "checkpoint.eqx"
#: Every file a run writes; a folder holding any of them holds a run.
OUTPUTS = (CHECKPOINT, "metrics.csv", "summary.json", "learning_curve.png")
#: The id of the run that wrote the folder's checkpoint (also in the checkpoint's header and in
#: summary.json): a checkpoint of another run copied into the folder is refused.
RUN_ID = ".run_id"


def warn(message: str) -> None:
    print(f"warning: {' '.join(message.split())}", file=sys.stderr, flush=True)


def outputs_in(out: pathlib.Path) -> list[str]:
    return [n for n in OUTPUTS if (out / n).exists()] if out.is_dir() else []


def folder_run_id(out: pathlib.Path) -> str | None:
    """The id of the run whose outputs the folder holds (`.run_id`, else summary.json's), or
    None for a folder written before run ids existed."""
    try:
        text = (out / RUN_ID).read_text().strip()
        if text:
            return text
    except OSError:
        pass
    try:
        found = json.loads((out / "summary.json").read_text()).get("run_id")
    except (OSError, ValueError, AttributeError):
        return None
    return found if isinstance(found, str) else None


def write_run_id(out: pathlib.Path, run_id: str) -> None:
    """`.run_id` holds `run_id` (written through a temporary file and a rename, not synced to
    disk: an empty or missing `.run_id` only means a folder without an id, which is accepted)."""
    if folder_run_id(out) == run_id:
        return
    path = out / RUN_ID
    mode = file_mode(path)
    fd, tmp = tempfile.mkstemp(dir=out, prefix=RUN_ID + ".", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(f"{run_id}\n".encode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def check_out_path(out: pathlib.Path) -> None:
    """A path that cannot be a folder: one line naming the cause (a name too long, a dangling or
    looping link, a file), before anything is created."""
    try:
        os.stat(out)
    except FileNotFoundError:
        if out.is_symlink():
            raise RunFolderError(
                f"--out {out} is a symbolic link to {os.readlink(out)}, which does not exist; "
                "create its target or choose another --out."
            ) from None
        return
    except OSError as e:
        if e.errno == errno.ELOOP:
            why = "is a symbolic link that loops (it points back to itself)"
        elif e.errno == errno.ENAMETOOLONG:
            longest = max((len(p.encode()) for p in out.parts), default=0)
            why = (
                f"is too long for the file system (a component of {longest} bytes; most allow 255)"
            )
        elif e.errno == errno.ENOTDIR:
            raise RunFolderError(
                f"cannot write into --out {out}: a component of the path is a file, not a "
                "folder; choose another --out."
            ) from None
        else:
            why = f"cannot be used ({e.strerror or e})"
        raise RunFolderError(f"--out {out} {why}; choose another --out.") from None
    if not out.is_dir():
        raise RunFolderError(f"--out {out} is a file, not a folder; choose another --out.")


def _missing_parents(out: pathlib.Path) -> list[pathlib.Path]:
    """The folders `mkdir(parents=True)` of `out` would create, deepest first."""
    made, p = [], out
    while not p.exists() and not p.is_symlink() and p != p.parent:
        made.append(p)
        p = p.parent
    return made


def _open_lock(path: pathlib.Path) -> int:
    """`path` opened for the lock without following a symbolic link (a `.lock` link to another
    file must not have that file replaced by a PID), and refused when it is not a regular file."""
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise RunFolderError(
                f"{path} is a symbolic link; a run's lock must be a plain file (it is never "
                "followed, so its target was not touched). Remove the link or choose another "
                "--out."
            ) from None
        raise RunFolderError(
            f"cannot open the lock {path}: {e.strerror or e}; choose another --out."
        ) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise RunFolderError(
            f"{path} is not a plain file; a run's lock must be one. Remove it or choose another "
            "--out."
        )
    return fd


def clean_stale_temporaries(out: pathlib.Path) -> list[str]:
    """Remove what a killed run left: the temporary files of its atomic writes
    (`checkpoint.eqx.*.tmp`, ...) and write probes. Only called while holding the folder's lock,
    so no live run can own them."""
    removed = []
    names = (*OUTPUTS, RUN_ID)
    for p in out.iterdir():
        n = p.name
        stale = n.startswith(".write-test-") or (
            n.endswith(".tmp") and any(n.startswith(o + ".") for o in names)
        )
        if stale and p.is_file() and not p.is_symlink():
            p.unlink(missing_ok=True)
            removed.append(n)
    return removed


class RunLock:
    """The run's hold on its output folder: refuses a folder that holds another run (any of its
    outputs, not only the checkpoint), a `--resume` with nothing to resume, a folder that cannot
    be written (found before any work), and takes an exclusive `flock` on `out/.lock` so that a
    second run on the same folder fails at once."""

    def __init__(self, out: pathlib.Path, resume: bool):
        self.out, self.resume = out, resume
        self.fd: int | None = None
        self.fresh = False  # set once this run owns the folder's outputs
        self.created: list[pathlib.Path] = []  # folders this run made, deepest first

    def __enter__(self) -> RunLock:
        out = self.out
        check_out_path(out)
        if self.resume and not (out / CHECKPOINT).is_file():
            found = outputs_in(out)
            if found and found != ["metrics.csv"]:
                raise RunFolderError(
                    f"--resume: {out} holds {', '.join(found)} but no {CHECKPOINT} (that run "
                    "stopped before its first checkpoint), so there is nothing to resume; start "
                    "a new run in another --out."
                )
            if not found:
                what = "is an empty folder" if out.is_dir() else "does not exist"
                raise RunFolderError(
                    f"--resume: there is no run to resume in {out} (it {what}); check the path, "
                    "or leave out --resume to start a new run."
                )
            # metrics.csv only: a run killed before its first checkpoint, started again below.
        try:
            self.created = _missing_parents(out)
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
        self.fd = _open_lock(out / ".lock")
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
            clean_stale_temporaries(out)
            found = outputs_in(out)
            if found == ["metrics.csv"] and not (out / CHECKPOINT).exists():
                # A run killed before its first checkpoint: nothing to resume and nothing worth
                # keeping (its rows are re-made), so it starts again in place.
                warn(
                    f"{out} holds a run that stopped before its first checkpoint (metrics.csv "
                    "only); starting it again from step 0."
                )
                (out / "metrics.csv").unlink()
                self.resume, found = False, []
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
    command can be run again); the folders this run created (`--out a/b/c`: `a`, `b` and `c`
    when none existed) are removed if they are left empty."""
    if lock.fresh and not (out / CHECKPOINT).exists():
        for name in (*OUTPUTS, RUN_ID):
            (out / name).unlink(missing_ok=True)
    if not existed and getattr(lock, "released", False):
        (out / ".lock").unlink(missing_ok=True)
        for folder in lock.created or [out]:
            try:
                folder.rmdir()
            except OSError:
                break


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
