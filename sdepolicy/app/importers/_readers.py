"""Readers of the offline-RL file formats used before Minari, each to whole episodes.

Every reader returns a list of episodes, each a dict of numpy arrays in Minari's layout:
`observations` $(T + 1, d_o)$ (the last is the state after the last action), `actions`
$(T, d_a)$, `rewards` $(T,)$, `terminations` $(T,)$ and `truncations` $(T,)$ (booleans; a
time limit is a truncation, never a termination). Floats are float64 (exact for float32 sources).
Where a format has no next observation for an episode's last row, that row is dropped and the
new last step is a truncation.
"""

from __future__ import annotations

import os
import pickle
import warnings
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from .._errors import ConfigError, DataValidationError

#: Format names accepted by `read_episodes(..., format=...)`.
FORMATS = ("d4rl", "d3rlpy", "sb_npz", "cs285", "dapg")
#: cs285 marks the path-length limit with `terminal = 1`; the homework's limit for the gymnasium
#: MuJoCo tasks is their `max_episode_steps`, 1000 (a truncation there, a termination before).
CS285_TIME_LIMIT = 1000

_H5_EXT = (".h5", ".hdf5")
_PICKLE_EXT = (".pkl", ".pickle")


def _name(path: str) -> str:
    return os.path.basename(path)


def _require(keys: Any, needed: tuple[str, ...], what: str) -> None:
    missing = [k for k in needed if k not in keys]
    if missing:
        raise DataValidationError(
            f"{what} lacks the key(s) {', '.join(missing)} (has: {', '.join(sorted(keys))})."
        )


def _rows(arrays: Mapping[str, Any], what: str) -> dict[str, np.ndarray]:
    """Per-row arrays as numpy, 2-d for vectors, checked to have one common length."""
    out = {}
    for k, v in arrays.items():
        try:
            a = np.asarray(v)
        except ValueError:  # lists of rows of different lengths
            raise DataValidationError(
                f"{what}: `{k}` is ragged (its rows have different lengths), not an array."
            ) from None
        if a.ndim == 0:
            raise DataValidationError(
                f"{what}: `{k}` is a single value (a 0-d array), not one row per step."
            )
        if a.shape[0] == 0:
            raise DataValidationError(f"{what}: `{k}` has no rows (no transitions).")
        if a.dtype == bool or k in ("terminals", "timeouts", "episode_terminals", "terminal"):
            a = a.astype(np.float64)
        if not np.issubdtype(a.dtype, np.number):
            raise DataValidationError(f"{what}: `{k}` is not numeric (dtype {a.dtype}).")
        a = a.astype(np.float64)
        if k in (
            "observations",
            "actions",
            "obs",
            "observation",
            "action",
            "next_observations",
            "next_observation",
        ):
            a = a.reshape(a.shape[0], -1) if a.ndim != 1 else a.reshape(-1, 1)
        else:
            a = a.reshape(-1)
        out[k] = a
    lengths = {k: v.shape[0] for k, v in out.items()}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{k} {n}" for k, n in lengths.items())
        raise DataValidationError(f"{what} has ragged lengths (rows per key: {shown}).")
    return out


def _episode(obs, act, rew, term_last, trunc_last) -> dict[str, np.ndarray]:
    steps = rew.shape[0]
    term = np.zeros(steps, dtype=bool)
    trunc = np.zeros(steps, dtype=bool)
    if steps:
        term[-1], trunc[-1] = bool(term_last), bool(trunc_last) and not bool(term_last)
    return {
        "observations": obs,
        "actions": act,
        "rewards": rew,
        "terminations": term,
        "truncations": trunc,
    }


def _from_transitions(obs, act, rew, nxt, term, trunc) -> list[dict[str, np.ndarray]]:
    """Rows of (o, a, r, o', terminal, timeout) to episodes, which end at a terminal, a timeout,
    the last row, or where o' of a row is not the next row's o (a break: a truncation)."""
    n = rew.shape[0]
    ends = (term > 0) | (trunc > 0)
    if n > 1:
        ends[:-1] |= np.any(nxt[:-1] != obs[1:], axis=1)
    if n:
        ends[-1] = True
    episodes, start = [], 0
    for e in np.flatnonzero(ends):
        sl = slice(start, e + 1)
        observations = np.concatenate([obs[sl], nxt[e : e + 1]], axis=0)
        episodes.append(_episode(observations, act[sl], rew[sl], term[e] > 0, True))
        start = e + 1
    return episodes


def _from_rows(obs, act, rew, term, trunc) -> list[dict[str, np.ndarray]]:
    """Rows of (o, a, r, terminal, timeout) without next observations: within an episode o' is
    the next row; each episode's last row has no successor and is dropped."""
    n = rew.shape[0]
    ends = (term > 0) | (trunc > 0)
    if n:
        ends[-1] = True
    episodes, start = [], 0
    for e in np.flatnonzero(ends):
        if e > start:  # rows start..e give e - start steps; row e only supplies o_T
            sl = slice(start, e)
            episodes.append(_episode(obs[start : e + 1], act[sl], rew[sl], False, True))
        start = e + 1
    return episodes


def _h5_arrays(f, keys, what: str) -> dict[str, Any]:
    """The HDF5 datasets `keys` of an open file, refused when one is a group."""
    import h5py

    out = {}
    for k in keys:
        node = f[k]
        if not isinstance(node, h5py.Dataset):
            raise DataValidationError(
                f"{what}: `{k}` is an HDF5 {type(node).__name__.lower()}, not an array "
                "(a dataset); is this the right format?"
            )
        out[k] = node[()]
    return out


def read_d4rl(path: str) -> list[dict[str, np.ndarray]]:
    """D4RL HDF5: `observations`, `actions`, `rewards`, `terminals`, `timeouts` and optionally
    `next_observations`, one row per step."""
    import h5py

    with h5py.File(path, "r") as f:
        _require(
            f.keys(),
            ("observations", "actions", "rewards", "terminals", "timeouts"),
            f"D4RL file {_name(path)}",
        )
        keys = ["observations", "actions", "rewards", "terminals", "timeouts"]
        if "next_observations" in f:
            keys.append("next_observations")
        what = f"D4RL file {_name(path)}"
        d = _rows(_h5_arrays(f, keys, what), what)
    if "next_observations" in d:
        return _from_transitions(
            d["observations"],
            d["actions"],
            d["rewards"],
            d["next_observations"],
            d["terminals"],
            d["timeouts"],
        )
    return _from_rows(d["observations"], d["actions"], d["rewards"], d["terminals"], d["timeouts"])


def read_d3rlpy(path: str) -> list[dict[str, np.ndarray]]:
    """d3rlpy 1.x `MDPDataset` HDF5. Each episode is $T + 1$ rows $o_0..o_T$ ending at an
    `episode_terminals` flag (or at the file's end); `rewards[i]` and `terminals[i]` belong to
    the arrival at $o_i$, so step $i$ is $(o_i, a_i, r_{i+1}, o_{i+1})$, and the action of the
    last row is never taken."""
    import h5py

    keys = ("observations", "actions", "rewards", "terminals", "episode_terminals")
    with h5py.File(path, "r") as f:
        _require(f.keys(), keys, f"d3rlpy file {_name(path)}")
        what = f"d3rlpy file {_name(path)}"
        d = _rows(_h5_arrays(f, keys, what), what)
    obs, act, rew, term = d["observations"], d["actions"], d["rewards"], d["terminals"]
    ends = d["episode_terminals"] > 0
    n = rew.shape[0]
    if n:
        ends[-1] = True  # a last episode cut short ends with the file
    episodes, start = [], 0
    for e in np.flatnonzero(ends):
        if e > start:
            episodes.append(
                _episode(
                    obs[start : e + 1], act[start:e], rew[start + 1 : e + 1], term[e] > 0, True
                )
            )
        start = e + 1
    return episodes


def read_sb_npz(path: str) -> list[dict[str, np.ndarray]]:
    """stable-baselines' GAIL expert `.npz`: `obs`, `actions`, `rewards`, `episode_starts`
    (and `episode_returns`); no next observations, so each episode's last step is dropped."""
    with open(path, "rb") as f:
        magic = f.read(4)
    if not magic:
        raise DataValidationError(f"npz file {_name(path)} is empty (0 bytes).")
    if magic[:2] != b"PK":  # every zip (an .npz is one) starts so; a half download does too
        raise DataValidationError(
            f"{_name(path)} is not an .npz (zip) file: it does not start like one (first bytes "
            f"{magic!r}); is it the right file, or a text or HTML page saved under that name?"
        )
    with np.load(path, allow_pickle=False) as z:
        _require(
            z.files, ("obs", "actions", "rewards", "episode_starts"), f"npz file {_name(path)}"
        )
        d = _rows(
            {k: z[k] for k in ("obs", "actions", "rewards", "episode_starts")},
            f"npz file {_name(path)}",
        )
    starts = d["episode_starts"] > 0
    n = starts.shape[0]
    # An episode ends on the row before the next start; the last one with the file.
    ends = np.zeros(n, dtype=bool)
    if n:
        ends[:-1] = starts[1:]
    return _from_rows(d["obs"], d["actions"], d["rewards"], np.zeros(n), ends.astype(float))


def _load_pickle(path: str) -> Any:
    with warnings.catch_warnings():
        # Pickles written with numpy 1 name `numpy.core`; numpy 2 warns and loads them.
        warnings.simplefilter("ignore", DeprecationWarning)
        with open(path, "rb") as f:
            try:
                return pickle.load(f)
            except Exception as e:
                raise DataValidationError(
                    f"{_name(path)} is not a readable pickle ({type(e).__name__}: {e})."
                ) from e


def _paths(obj: Any, path: str) -> list[Mapping]:
    if not isinstance(obj, (list, tuple)) or not all(isinstance(p, Mapping) for p in obj):
        raise DataValidationError(
            f"{_name(path)}: expected a list of dicts (one per episode), got {type(obj).__name__}."
        )
    return list(obj)


def read_cs285(path: str) -> list[dict[str, np.ndarray]]:
    """cs285 (Berkeley deep RL course) pickles: a list of paths, dicts with `observation`,
    `action`, `reward`, `next_observation`, `terminal`. `terminal` marks the end of a rollout:
    a truncation when the path has `CS285_TIME_LIMIT` steps, a termination before."""
    episodes = []
    for i, p in enumerate(_paths(_load_pickle(path), path)):
        keys = ("observation", "action", "reward", "next_observation", "terminal")
        what = f"cs285 file {_name(path)}, path {i}"
        _require(p.keys(), keys, what)
        d = _rows({k: p[k] for k in keys}, what)
        term = d["terminal"].copy()
        timeout = np.zeros_like(term)
        if term.shape[0] >= CS285_TIME_LIMIT and term[-1] > 0:
            term[-1], timeout[-1] = 0.0, 1.0
        episodes += _from_transitions(
            d["observation"], d["action"], d["reward"], d["next_observation"], term, timeout
        )
    return episodes


def read_dapg(path: str) -> list[dict[str, np.ndarray]]:
    """hand_dapg demonstrations: a list of dicts with `observations` $(T, d_o)$, `actions`,
    `rewards` and `init_state_dict`; no terminals and no next observation of the last row, which
    is dropped."""
    episodes = []
    for i, p in enumerate(_paths(_load_pickle(path), path)):
        what = f"hand_dapg file {_name(path)}, demo {i}"
        _require(p.keys(), ("observations", "actions", "rewards"), what)
        d = _rows({k: p[k] for k in ("observations", "actions", "rewards")}, what)
        n = d["rewards"].shape[0]
        episodes += _from_rows(
            d["observations"], d["actions"], d["rewards"], np.zeros(n), np.zeros(n)
        )
    return episodes


_READERS = {
    "d4rl": read_d4rl,
    "d3rlpy": read_d3rlpy,
    "sb_npz": read_sb_npz,
    "cs285": read_cs285,
    "dapg": read_dapg,
}


def detect_format(path: str) -> str:
    """The format of a file, from its extension and its keys; see `FORMATS`."""
    ext = os.path.splitext(path)[1].lower()
    if ext in _H5_EXT:
        import h5py

        try:
            with h5py.File(path, "r") as f:
                keys = set(f.keys())
        except OSError as e:
            raise DataValidationError(f"{_name(path)} is not a readable HDF5 file ({e}).") from e
        return "d3rlpy" if "episode_terminals" in keys else "d4rl"
    if ext == ".npz":
        return "sb_npz"
    if ext in _PICKLE_EXT:
        obj = _load_pickle(path)
        first = obj[0] if isinstance(obj, (list, tuple)) and obj else None
        if isinstance(first, Mapping):
            if "next_observation" in first:
                return "cs285"
            if "observations" in first:
                return "dapg"
        raise ConfigError(
            f"Cannot tell the format of {_name(path)}: a pickle that is not a list of cs285 paths "
            f"(`observation`, `next_observation`, ...) or hand_dapg demos (`observations`, ...); "
            f"pass format= one of {', '.join(FORMATS)}."
        )
    raise ConfigError(
        f"Unknown file type '{ext or path}' of {_name(path)}: expected .h5/.hdf5 (D4RL, d3rlpy), "
        f".npz (stable-baselines) or .pkl/.pickle (cs285, hand_dapg); pass format= one of "
        f"{', '.join(FORMATS)}."
    )


def read_episodes(path: str, format: str = "auto") -> list[dict[str, np.ndarray]]:
    """Reads an offline-RL file recorded by another library as whole episodes.

    **Arguments:**

    - `path`: a D4RL or d3rlpy 1.x HDF5 file, a stable-baselines GAIL `.npz`, a cs285 or
      hand_dapg pickle (pickles run code when loaded: open only files you trust).
    - `format`: `"auto"` (from the extension and the keys) or one of `"d4rl"`, `"d3rlpy"`,
      `"sb_npz"`, `"cs285"`, `"dapg"`.

    **Returns:**

    A list of episodes, each a dict with `observations` $(T + 1, d_o)$, `actions` $(T, d_a)$,
    `rewards` $(T,)$ (float64) and `terminations`, `truncations` $(T,)$ (bool); episodes
    without a step are left out.

    **Raises:**

    `ConfigError` for an unknown format; `DataValidationError` for a missing file, a
    missing key or ragged lengths.
    """
    if not os.path.isfile(path):
        raise DataValidationError(f"No such file: {path}.")
    fmt = detect_format(path) if format == "auto" else format
    if fmt not in _READERS:
        raise ConfigError(f"Unknown format '{format}'; choose auto or one of {', '.join(FORMATS)}.")
    try:
        return [ep for ep in _READERS[fmt](path) if ep["rewards"].shape[0] > 0]
    except (OSError, EOFError, zipfile.BadZipFile, ValueError, KeyError, TypeError) as e:
        # A file that is not of its format, is truncated (a half download), is empty, or holds
        # objects where arrays belong: numpy, zipfile and h5py each have their own exception.
        text = str(e).strip()
        detail = text.splitlines()[0] if text else type(e).__name__
        hint = {
            EOFError: "it is empty",
            zipfile.BadZipFile: "it is not a complete .npz (zip) file: truncated or not an .npz",
        }.get(type(e))
        if hint is None and "pickle" in text.lower() and fmt == "sb_npz":
            hint = "it holds Python objects, not plain arrays (or is not an .npz at all)"
        raise DataValidationError(
            f"{_name(path)} cannot be read as {fmt}: {hint or detail}"
            + (f" ({type(e).__name__}: {detail})" if hint and len(detail) < 60 else "")
            + "."
        ) from None
