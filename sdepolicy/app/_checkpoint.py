"""Atomic checkpoints of any pytree (agent states of all seeds), with a header that refuses an
incompatible restore with one clear line instead of a stack trace.

File layout: one JSON line (the header), then equinox's serialised leaves (the payload). The
header records the format version, a fingerprint of the run's configuration (and, optionally, the
description it hashes, so a refusal can name the setting that differs), the run's id, the step,
every leaf's shape and dtype, the payload's length, and one SHA-256 over the whole header and the
payload, so a checkpoint from another configuration, another task or another package version is
refused, and a truncated or altered one (its arrays or its header: the step, the evaluation
history) is refused before it is used.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pathlib
import tempfile
from typing import Any

import equinox as eqx
import jax
import numpy as np

from ._errors import CheckpointMismatchError

#: 2 added the payload checksum; 3 made the checksum cover the header too and added the run id.
#: Version 1 and 2 files are still read (their header is not covered).
FORMAT_VERSION = 3
_READABLE = (1, 2, 3)


def config_fingerprint(config: Any) -> str:
    """A stable hash of a JSON-able description of the run (task, algorithm, hyper-parameters)."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _leaf_signature(tree) -> list[str]:
    leaves = jax.tree.leaves(eqx.filter(tree, eqx.is_array))
    return [f"{np.dtype(x.dtype).name}{list(x.shape)}" for x in leaves]


def umask() -> int:
    """The process's umask, read without changing it where Linux tells it (`/proc`), else by
    setting and restoring it."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode(path: str | os.PathLike) -> int:
    """The permission bits a file written to `path` gets: those of the file it replaces, else
    what `open` would give a new file (0666 less the umask)."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        return 0o666 & ~umask()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically: a temporary file with a unique name in the same folder,
    flushed to disk, then renamed over `path`. A kill or a full disk at any moment leaves either
    the old file or the new one, never a mix; the temporary file is removed on any error, and its
    unique name keeps two writers from writing into one temporary file. The file gets the mode an
    ordinary write would give it (`file_mode`), not `mkstemp`'s private 0600."""
    path = pathlib.Path(path)
    mode = file_mode(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        # BaseException: a Ctrl-C mid-write must not leave the temporary file behind either.
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def save_checkpoint(
    path: str | os.PathLike,
    tree,
    *,
    step: int,
    fingerprint: str,
    extra=None,
    description: Any = None,
    run_id: str | None = None,
):
    """Write `tree` to `path` atomically (`atomic_write_bytes`), so a run killed mid-write
    leaves the previous checkpoint intact. `description` (JSON-able) is stored beside the
    fingerprint so that a mismatch on load can name the differing settings; `run_id` names the
    run that wrote it. One SHA-256 covers the header and the payload (`_digest`)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    eqx.tree_serialise_leaves(buf, tree)
    payload = buf.getvalue()
    header = {
        "format_version": FORMAT_VERSION,
        "fingerprint": fingerprint,
        "description": description,
        "step": int(step),
        "leaves": _leaf_signature(tree),
        "run_id": run_id,
        "payload_bytes": len(payload),
        "extra": extra or {},
    }
    header["sha256"] = _digest(header, payload)
    atomic_write_bytes(path, (json.dumps(header, allow_nan=False) + "\n").encode() + payload)


def _digest(header: dict, payload: bytes) -> str:
    """SHA-256 of the header (canonical JSON, without its own `sha256`) and the payload: a
    change to any value of the header (the step, the history, the run id) or to any byte of the
    arrays changes it, while the header's spacing or key order does not."""
    fields = {k: v for k, v in header.items() if k != "sha256"}
    blob = json.dumps(fields, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
    return hashlib.sha256(blob + b"\n" + payload).hexdigest()


def describe_differences(stored: Any, current: Any, prefix: str = "") -> list[str]:
    """The settings where two run descriptions (nested dicts) differ, as `"name: A there, B
    here"` strings, in key order."""
    if isinstance(stored, dict) and isinstance(current, dict):
        out = []
        for k in sorted(set(stored) | set(current), key=str):
            name = f"{prefix}.{k}" if prefix else str(k)
            if k not in stored or k not in current:
                where = "here" if k in current else "there"
                out.append(f"{name}: only set {where}")
            else:
                out.extend(describe_differences(stored[k], current[k], name))
        return out
    # Compare through JSON so that tuples and lists (a round trip of the header) agree.
    dump = lambda x: json.dumps(x, sort_keys=True, default=str)
    if dump(stored) != dump(current):
        return [f"{prefix or 'value'}: {dump(stored)} there, {dump(current)} here"]
    return []


def read_header(path: str | os.PathLike) -> dict:
    """The checkpoint's header (no arrays are read; not yet checked against its digest)."""
    with open(path, "rb") as f:
        line = f.readline()
    try:
        header = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise CheckpointMismatchError(f"{path} is not an sdepolicy checkpoint.") from e
    if not isinstance(header, dict) or not isinstance(header.get("step"), int):
        raise CheckpointMismatchError(
            f"{path} is not an sdepolicy checkpoint (its first line is JSON, but not a "
            "checkpoint's header)."
        )
    return header


def _check_integrity(path, header: dict, payload: bytes, digest_ok, altered: str) -> None:
    """Refuse a payload whose length is not the header's `payload_bytes` (truncated) or whose
    digest does not match (`digest_ok()`; `altered` says which digest), naming the cause."""
    size = header.get("payload_bytes")
    if len(payload) != size:
        why = f"its arrays hold {len(payload)} bytes where its header says {size} (truncated)"
    elif not digest_ok():
        why = altered
    else:
        return
    raise CheckpointMismatchError(
        f"{path} is corrupt: {why}. Restore it from a copy, or start a new run in another --out."
    )


def _read_verified(path: pathlib.Path) -> tuple[dict, bytes]:
    """The header and payload of a checkpoint, refused (`CheckpointMismatchError`) when its
    format is unknown or it is truncated or altered (format 3: header and payload; format 2:
    the payload). Format 1 has no digest."""
    header = read_header(path)
    if header.get("format_version") not in _READABLE:
        raise CheckpointMismatchError(
            f"{path}: checkpoint format {header.get('format_version')!r} is not a supported "
            f"format {_READABLE} (written by another sdepolicy version?); start a new run in "
            "another --out."
        )
    with open(path, "rb") as f:
        f.readline()
        payload = f.read()
    if header["format_version"] >= 3:
        _check_integrity(
            path,
            header,
            payload,
            lambda: header.get("sha256") == _digest(header, payload),
            "its header or its arrays do not match the SHA-256 it was written with (altered "
            "on disk)",
        )
    elif header["format_version"] == 2:
        _check_integrity(
            path,
            header,
            payload,
            lambda: hashlib.sha256(payload).hexdigest() == header.get("payload_sha256"),
            "its arrays do not match the SHA-256 in its header (altered on disk)",
        )
    return header, payload


def verified_header(path: str | os.PathLike) -> dict:
    """The checkpoint's header once its digest is checked (`load_checkpoint`'s integrity
    checks): a resumed run takes its settings, step and history only from a header that was
    not altered."""
    return _read_verified(pathlib.Path(path))[0]


def load_checkpoint(path: str | os.PathLike, like, *, fingerprint: str, description: Any = None):
    """Restore a pytree shaped like `like` from `path`; returns `(tree, header)`.

    Raises `CheckpointMismatchError` when the checkpoint is corrupt (format 3: its digest does
    not match its header and payload, a truncated or altered file, header included; format 2:
    the payload's length or checksum differs from the header's), was written by another
    configuration (fingerprint; with `description`, the message names the settings that
    differ), another format, or holds arrays of other shapes.
    """
    path = pathlib.Path(path)
    header, payload = _read_verified(path)
    if header.get("fingerprint") != fingerprint:
        diffs = []
        if description is not None and header.get("description") is not None:
            diffs = describe_differences(header["description"], description)
        what = (
            "; ".join(diffs[:4]) + ("; ..." if len(diffs) > 4 else "")
            if diffs
            else (f"fingerprint {header.get('fingerprint')} there, {fingerprint} here")
        )
        raise CheckpointMismatchError(
            f"{path} was written by a different configuration ({what}). To continue it, resume "
            "with its settings; to train with these, choose another --out."
        )
    if header.get("leaves") != _leaf_signature(like):
        raise CheckpointMismatchError(
            f"{path}: the stored arrays do not match this run's model shapes."
        )
    try:
        tree = eqx.tree_deserialise_leaves(io.BytesIO(payload), like)
    except Exception as e:  # a version-1 file (no checksum) that is damaged
        raise CheckpointMismatchError(f"{path} is corrupt: {type(e).__name__}.") from e
    return tree, header
