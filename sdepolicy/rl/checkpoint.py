"""Atomic checkpoints of any pytree (agent states of all seeds), with a header that refuses an
incompatible restore with one clear line instead of a stack trace.

File layout: one JSON line (the header), then equinox's serialised leaves. The header records the
format version, a fingerprint of the run's configuration, the step, and every leaf's shape and
dtype, so a checkpoint from another configuration, another task or another package version is
caught before a single array is read.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pathlib
from typing import Any

import equinox as eqx
import jax
import numpy as np

from .errors import CheckpointMismatchError

FORMAT_VERSION = 1


def config_fingerprint(config: Any) -> str:
    """A stable hash of a JSON-able description of the run (task, algorithm, hyper-parameters)."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _leaf_signature(tree) -> list[str]:
    leaves = jax.tree.leaves(eqx.filter(tree, eqx.is_array))
    return [f"{np.dtype(x.dtype).name}{list(x.shape)}" for x in leaves]


def save_checkpoint(path: str | os.PathLike, tree, *, step: int, fingerprint: str, extra=None):
    """Write `tree` to `path` atomically (a temporary file in the same folder, then a rename), so
    a run killed mid-write leaves the previous checkpoint intact."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {
        "format_version": FORMAT_VERSION,
        "fingerprint": fingerprint,
        "step": int(step),
        "leaves": _leaf_signature(tree),
        "extra": extra or {},
    }
    buf = io.BytesIO()
    eqx.tree_serialise_leaves(buf, tree)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write((json.dumps(header) + "\n").encode())
        f.write(buf.getvalue())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_header(path: str | os.PathLike) -> dict:
    """The checkpoint's header (no arrays are read)."""
    with open(path, "rb") as f:
        line = f.readline()
    try:
        return json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointMismatchError(f"{path} is not an sdepolicy checkpoint.") from e


def load_checkpoint(path: str | os.PathLike, like, *, fingerprint: str):
    """Restore a pytree shaped like `like` from `path`; returns `(tree, header)`.

    Raises `CheckpointMismatchError` when the checkpoint was written by another configuration
    (fingerprint), another format, or holds arrays of other shapes.
    """
    path = pathlib.Path(path)
    header = read_header(path)
    if header.get("format_version") != FORMAT_VERSION:
        raise CheckpointMismatchError(
            f"{path}: checkpoint format {header.get('format_version')} is not the supported "
            f"format {FORMAT_VERSION}."
        )
    if header.get("fingerprint") != fingerprint:
        raise CheckpointMismatchError(
            f"{path} was written by a different configuration (fingerprint "
            f"{header.get('fingerprint')}, this run {fingerprint}); use another --out or drop "
            "--resume."
        )
    if header.get("leaves") != _leaf_signature(like):
        raise CheckpointMismatchError(
            f"{path}: the stored arrays do not match this run's model shapes."
        )
    with open(path, "rb") as f:
        f.readline()
        tree = eqx.tree_deserialise_leaves(f, like)
    return tree, header
