"""Offline-RL files recorded by others, written as local Minari datasets.

`import_dataset` reads a file with `read_episodes`, validates everything (lengths,
finite values, dimensions and the action box of the environment, optionally a replay check),
and only then writes the dataset: into a hidden folder inside the datasets root (named after the
importing process), renamed into place at the end under an exclusive lock of the root, so a
failure leaves nothing behind, an overwritten dataset is replaced in one step, and of two imports
to one new id without `overwrite` exactly one succeeds. What a killed import left (its hidden
folder) is removed by the next import into the same root. The environment does not have to be
installable: its spec and spaces come from Gymnasium when it is, else from a small table
(`AdroitHandDoor-v1` without gymnasium-robotics).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import math
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from typing import Any

import numpy as np

from .._checkpoint import umask
from .._data import (
    check_backend,
    check_dataset_id,
    datasets_root,
    episodes_to_transitions,
    space_dim,
)
from .._errors import (
    ConfigError,
    DatasetExistsError,
    DataValidationError,
    EnvMismatchError,
    MissingExtraError,
    OutputWriteError,
    SdepolicyError,
    SpaceMismatchError,
)
from ._readers import detect_format, read_episodes
from ._replay import OBS_TOLERANCE, REWARD_TOLERANCE, check_replay


def _known(env_id, ref_min, ref_max, licence, source, **extra) -> dict[str, Any]:
    return dict(
        env_id=env_id,
        ref_min_score=ref_min,
        ref_max_score=ref_max,
        licence=licence,
        source=source,
        **extra,
    )


_CS285 = "berkeleydeeprlcourse/homework_fall2023 @ f401a13, hw1/cs285/expert_data/"
# The cs285 experts store their Gaussian policies' unclipped samples (Hopper up to 4.1); MuJoCo
# clamps controls to the actuators' ctrlrange, so the clipped actions are the ones that moved
# the robot (only the stored control cost saw the unclipped ones).
#: Defaults of the known real files (basename -> env id, reference scores, licence, source), so
#: that `import_dataset(path, dataset_id)` of those needs no other argument. Pendulum references:
#: the random data's and the expert data's own mean returns; MuJoCo and Adroit door: D4RL's.
KNOWN_FILES: dict[str, dict[str, Any]] = {
    "d3rlpy_pendulum_random.h5": _known(
        "Pendulum-v1",
        -1229.0,
        -150.0,
        "MIT",
        "shyamal-anadkat/offlinerl @ da001f2, d3rlpy_data/pendulum_random.h5",
    ),
    "sb_expert_pendulum.npz": _known(
        "Pendulum-v1",
        -1229.0,
        -150.0,
        "MIT",
        "hill-a/stable-baselines @ 259f278, stable_baselines/gail/dataset/expert_pendulum.npz",
    ),
    "cs285_expert_Hopper-v4.pkl": _known(
        "Hopper-v4",
        -20.272305,
        3234.3,
        "MIT",
        _CS285 + "expert_data_Hopper-v4.pkl",
        clip_actions=True,
    ),
    "cs285_expert_HalfCheetah-v4.pkl": _known(
        "HalfCheetah-v4",
        -280.178953,
        12135.0,
        "MIT",
        _CS285 + "expert_data_HalfCheetah-v4.pkl",
        clip_actions=True,
    ),
    "cs285_expert_Walker2d-v4.pkl": _known(
        "Walker2d-v4",
        1.629008,
        4592.3,
        "MIT",
        _CS285 + "expert_data_Walker2d-v4.pkl",
        clip_actions=True,
    ),
    # Ant-v4's default (use_contact_forces=False) is the 27-d observation of this file; Ant-v5
    # needs include_cfrc_ext_in_observation=False for it. 10 action entries exceed the box (by
    # up to 0.26); MuJoCo clamps them to the actuators' ctrlrange, so the clipped actions are
    # the ones that moved the robot (only the stored control cost saw the unclipped ones).
    "cs285_expert_Ant-v4.pkl": _known(
        "Ant-v4", -325.6, 3879.7, "MIT", _CS285 + "expert_data_Ant-v4.pkl", clip_actions=True
    ),
    # Human teleoperation sends actions past the [-1, 1] box (up to 1.37); the environment clips
    # them in `step`, so clipping them here changes nothing the environment saw.
    "hand_dapg_door-v0_demos.pickle": _known(
        "AdroitHandDoor-v1",
        -56.512833,
        2880.5693,
        "Apache-2.0",
        "aravindr93/hand_dapg @ 9a1de23, dapg/demonstrations/door-v0_demos.pickle",
        clip_actions=True,
    ),
}

# Environments whose spec and spaces are known without importing their package (the importer
# must not need an optional extra; making the env later does).
_OFFLINE_ENVS: dict[str, dict[str, Any]] = {
    "AdroitHandDoor-v1": dict(
        entry_point="gymnasium_robotics.envs.adroit_hand.adroit_door:AdroitHandDoorEnv",
        max_episode_steps=200,
        kwargs={"reward_type": "dense"},
        obs_dim=39,
        act_dim=28,
        act_low=-1.0,
        act_high=1.0,
    ),
}


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _env_spec_and_spaces(env_id: str) -> tuple[Any, Any, Any]:
    """(EnvSpec, observation space, action space) of `env_id`, without needing its package
    when the table above knows it."""
    import gymnasium as gym

    try:
        import gymnasium_robotics  # noqa: F401  (registers Adroit, AntMaze, ... when installed)
    except ImportError:
        pass
    error: Exception | None = None
    try:
        spec = gym.spec(env_id)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            env = gym.make(spec, disable_env_checker=True)
        try:
            return spec, env.observation_space, env.action_space
        finally:
            env.close()
    except Exception as e:  # not registered, its package or a library missing
        error = e
    known = _OFFLINE_ENVS.get(env_id)
    if known is not None:
        from gymnasium.envs.registration import EnvSpec

        spec = EnvSpec(
            id=env_id,
            entry_point=known["entry_point"],
            max_episode_steps=known["max_episode_steps"],
            kwargs=dict(known["kwargs"]),
        )
        obs_space = gym.spaces.Box(-np.inf, np.inf, (known["obs_dim"],), np.float64)
        act_space = gym.spaces.Box(
            known["act_low"], known["act_high"], (known["act_dim"],), np.float32
        )
        return spec, obs_space, act_space
    text = f"{env_id} {error}".lower()
    if any(n in text for n in ("adroit", "antmaze", "pointmaze", "kitchen", "robotics")):
        raise MissingExtraError(
            f"Environment '{env_id}' needs gymnasium-robotics, which is not installed: run "
            f'`pip install -e ".[robotics]"`.'
        ) from error
    raise SdepolicyError(
        f"Cannot make environment '{env_id}' to read its spaces ({type(error).__name__}: "
        f"{str(error).strip().splitlines()[0] if str(error).strip() else ''}); check the id "
        f"and that its package is installed."
    ) from error


def _check_spaces(episodes, obs_space, act_space, env_id: str, name: str, clip: bool) -> int:
    """Checks dimensions and the action box; clips instead when `clip`. Returns #clipped."""
    import gymnasium as gym

    if not isinstance(act_space, gym.spaces.Box):
        raise SpaceMismatchError(
            f"Environment '{env_id}' has a {type(act_space).__name__} action space; sdepolicy's "
            "diffusion policies need continuous (Box) actions. Pass an environment with a "
            "continuous action space."
        )
    obs_dim, act_dim = episodes[0]["observations"].shape[1], episodes[0]["actions"].shape[1]
    want = (space_dim(obs_space), space_dim(act_space))
    if (obs_dim, act_dim) != want:
        raise SpaceMismatchError(
            f"{name} and environment '{env_id}' disagree: data observations ({obs_dim},), actions "
            f"({act_dim},); environment observations ({want[0]},), actions ({want[1]},). Pass "
            f"the environment (and version) the data was recorded in."
        )
    low = np.asarray(act_space.low, dtype=np.float64)
    high = np.asarray(act_space.high, dtype=np.float64)
    # float32 data of a float32 box may sit one rounding step outside it.
    slack = 1e-6 * np.maximum(1.0, np.maximum(np.abs(low), np.abs(high)))
    outside, worst, clipped = 0, 0.0, 0
    for ep in episodes:
        a = ep["actions"]
        bad = (a < low - slack) | (a > high + slack)
        if clip:
            clipped += int(np.sum(bad))
            ep["actions"] = np.clip(a, low, high)
        elif bad.any():
            outside += int(np.sum(bad))
            worst = max(worst, float(np.max(np.maximum(low - a, a - high))))
    if outside:
        raise DataValidationError(
            f"{name} has {outside} action entries outside the action box of '{env_id}' "
            f"[{low.min():g}, {high.max():g}] (by up to {worst:.4g}); pass the right environment, "
            f"or clip_actions=True (--clip-actions) if the environment clips its actions."
        )
    return clipped


def _check_number(value: Any, what: str) -> None:
    try:
        ok = math.isfinite(float(value))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ConfigError(f"{what} must be a finite number, got {value!r}.")


def import_dataset(
    path: str,
    dataset_id: str,
    *,
    env_id: str | None = None,
    format: str = "auto",
    ref_min_score: float | None = None,
    ref_max_score: float | None = None,
    provenance: str | None = None,
    overwrite: bool = False,
    check_replay_steps: int = 0,
    clip_actions: bool | None = None,
) -> Any:
    """Imports an offline-RL file recorded by another library as a local Minari dataset.

    **Arguments:**

    - `path`: the file (see `read_episodes` for the formats).
    - `dataset_id`: the Minari id to create under `MINARI_DATASETS_PATH`, `(namespace/)name-vN`.
    - `env_id`: the Gymnasium id the data was recorded in; stored as the dataset's environment
      and evaluation environment. Defaults to `KNOWN_FILES`'s for a known file.
    - `format`: `"auto"` or a format name of `read_episodes`.
    - `ref_min_score`, `ref_max_score`: reference returns for normalised scores (both or
      neither); default `KNOWN_FILES`'s.
    - `provenance`: a free text stored with the automatic provenance (file name, sha256,
      format, and the source and licence of a known file).
    - `overwrite`: replace an existing dataset of the same id.
    - `check_replay_steps`: replay this many transitions first with `check_replay` and
      refuse the data when they do not match.
    - `clip_actions`: clip actions into the environment's box instead of refusing them (for
      environments that clip in `step`); default `KNOWN_FILES`'s, else False.

    **Returns:**

    The new `minari.MinariDataset`; its metadata carries `env_spec`/`eval_env_spec`,
    `ref_min_score`/`ref_max_score` when known, and `data_provenance` (also in `description`),
    plus `replay_check` when one was run.

    **Raises:**

    `DatasetExistsError` (the id exists and not `overwrite`), `ConfigError` (bad id,
    format or arguments), `DataValidationError` (malformed data, actions outside the box),
    `SpaceMismatchError` (dimensions differ from the environment's), `EnvMismatchError`
    (the replay check failed). Nothing is written when any is raised.
    """
    check_dataset_id(dataset_id)
    if isinstance(check_replay_steps, bool) or not isinstance(check_replay_steps, int | np.integer):
        raise ConfigError(
            f"check_replay_steps (--check-replay) must be an integer, got {check_replay_steps!r}."
        )
    if check_replay_steps < 0:
        raise ConfigError(
            f"check_replay_steps (--check-replay) must be 0 (no check) or a positive number of "
            f"transitions, got {check_replay_steps}."
        )
    for value, what in (
        (ref_min_score, "ref_min_score (--ref-min)"),
        (ref_max_score, "ref_max_score (--ref-max)"),
    ):
        if value is not None:
            _check_number(value, what)
    root = datasets_root()
    if os.path.exists(root) and not os.path.isdir(root):
        raise ConfigError(
            f"The Minari datasets folder {root} (MINARI_DATASETS_PATH) is a file, not a folder."
        )
    final = os.path.join(root, dataset_id)
    if os.path.lexists(final) and not overwrite:
        raise DatasetExistsError(
            f"Dataset '{dataset_id}' already exists in {root}; pick another id or overwrite it "
            f"(overwrite=True, --overwrite)."
        )
    if not os.path.isfile(path):
        raise DataValidationError(f"No such file: {path}.")
    name = os.path.basename(path)
    known = KNOWN_FILES.get(name, {})
    env_id = env_id or known.get("env_id")
    if env_id is None:
        raise ConfigError(
            f"No environment for {name}: pass env_id= (--env), the Gymnasium id it was recorded in."
        )
    if ref_min_score is None and ref_max_score is None and env_id == known.get("env_id"):
        ref_min_score, ref_max_score = known.get("ref_min_score"), known.get("ref_max_score")
    if (ref_min_score is None) != (ref_max_score is None):
        raise ConfigError("Give both reference scores (ref_min_score and ref_max_score) or none.")
    if ref_min_score is not None and not float(ref_max_score) != float(ref_min_score):
        raise ConfigError("ref_max_score must differ from ref_min_score.")
    if clip_actions is None:
        clip_actions = bool(known.get("clip_actions", False)) and env_id == known.get("env_id")

    fmt = detect_format(path) if format == "auto" else format
    episodes = read_episodes(path, fmt)
    if not episodes:
        raise DataValidationError(f"{name} has no transitions (no episode with a step).")
    # The project's own validation: T + 1 observations, dimensions, finite values.
    check_backend()
    episodes_to_transitions(episodes, name=name)
    spec, obs_space, act_space = _env_spec_and_spaces(env_id)
    # Replay first: the environment sees the recorded actions, as it did (MuJoCo and Pendulum
    # clamp them themselves), so the stored rewards' control costs match.
    replay = None
    if check_replay_steps > 0:
        replay = check_replay(episodes, env_id, check_replay_steps)
        if replay["ok"] is False:
            raise EnvMismatchError(
                f"{name} does not replay in '{env_id}': median errors over "
                f"{replay['transitions']} transitions: observation "
                f"{replay['median_obs_error']:.3g} (tolerance {OBS_TOLERANCE:g}), reward "
                f"{replay['median_reward_error']:.3g} (tolerance {REWARD_TOLERANCE:g}); largest "
                f"{replay['max_obs_error']:.3g} and {replay['max_reward_error']:.3g}. Was the "
                f"data recorded in another environment or version?"
            )

    clipped = _check_spaces(episodes, obs_space, act_space, env_id, name, clip_actions)

    text = f"imported from {name} (sha256 {_sha256(path)}, format {fmt})"
    if known:
        text += f"; source {known['source']}; licence {known['licence']}"
    if clipped:
        text += f"; {clipped} action entries clipped into the action box"
    if provenance:
        text += f"; {provenance}"
    returns = [float(np.sum(ep["rewards"])) for ep in episodes]
    metadata: dict[str, Any] = {
        "dataset_id": dataset_id,
        "env_spec": spec.to_json(),
        "eval_env_spec": spec.to_json(),
        "algorithm_name": f"recorded by others ({fmt} file)",
        "author": {known["source"].split(" @ ")[0] if known else "unknown"},
        "code_permalink": "sdepolicy/app/importers",
        "description": (
            f"{len(episodes)} episodes, {sum(len(ep['rewards']) for ep in episodes)} steps, "
            f"mean return {np.mean(returns):.1f}; {text}."
        ),
        "data_provenance": text,
    }
    if ref_min_score is not None:
        metadata["ref_min_score"] = float(ref_min_score)
        metadata["ref_max_score"] = float(ref_max_score)
    if replay is not None:
        metadata["replay_check"] = replay
    return _write(root, final, dataset_id, episodes, obs_space, act_space, metadata, overwrite)


#: Hidden folders of an import in progress (`.import-<pid>-*`) and of a dataset being replaced
#: (`.replaced-<pid>-*`); Minari's listings skip hidden names.
_TMP_PREFIX, _OLD_PREFIX = ".import-", ".replaced-"
#: Hidden folders of versions that did not name the process: stale once untouched this long.
_UNNAMED_STALE_S = 3600.0
#: HDF5's cost per episode (groups, attributes, chunk indices), measured at about 15 kB.
_EPISODE_BYTES = 20_000


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _owner(name: str) -> int | None:
    """The PID in a hidden folder's name, or None (a name of an earlier version)."""
    for prefix in (_TMP_PREFIX, _OLD_PREFIX):
        if name.startswith(prefix):
            head = name[len(prefix) :].split("-", 1)[0]
            return int(head) if head.isdigit() else None
    return None


def clean_stale(root: str) -> list[str]:
    """Remove the hidden folders that imports killed on this machine left in `root` (their
    process is gone; a folder of an earlier version without a PID once untouched for an hour).
    A dataset that a killed overwrite had moved aside and not yet replaced is put back. Call
    with the root's lock held. Returns the names removed or restored."""
    done = []
    try:
        names = os.listdir(root)
    except OSError:
        return done
    for name in names:
        if not name.startswith((_TMP_PREFIX, _OLD_PREFIX)):
            continue
        path = os.path.join(root, name)
        if os.path.islink(path) or not os.path.isdir(path):
            continue
        pid = _owner(name)
        if pid is not None and _alive(pid):
            continue
        if pid is None:
            try:
                if time.time() - os.stat(path).st_mtime < _UNNAMED_STALE_S:
                    continue
            except OSError:
                continue
        if name.startswith(_OLD_PREFIX):
            try:
                with open(os.path.join(path, "id")) as f:
                    dataset_id = f.read().strip()
                check_dataset_id(dataset_id)
                final, old = os.path.join(root, dataset_id), os.path.join(path, "dataset")
                if os.path.isdir(old) and not os.path.lexists(final):
                    os.makedirs(os.path.dirname(final), exist_ok=True)
                    os.rename(old, final)  # the replacement never arrived: the old one is back
                    done.append(f"{name} (restored {dataset_id})")
            except (OSError, SdepolicyError):
                pass
        shutil.rmtree(path, ignore_errors=True)
        done.append(name)
    return done


@contextlib.contextmanager
def _root_lock(root: str):
    """An exclusive `flock` of the datasets root itself (no lock file is left behind), held
    only for the short swap into place; a second import waits for it."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _estimated_bytes(episodes, obs_space, act_space) -> int:
    steps = sum(len(ep["rewards"]) for ep in episodes)
    per_step = (
        space_dim(obs_space) * np.dtype(obs_space.dtype).itemsize
        + space_dim(act_space) * np.dtype(act_space.dtype).itemsize
        + 8  # reward
        + 2  # termination, truncation
    )
    return int(1.1 * (steps + len(episodes)) * per_step) + _EPISODE_BYTES * len(episodes) + 65536


def _check_free_space(root: str, need: int, dataset_id: str) -> None:
    """Refuse before writing when the disk cannot hold the dataset: HDF5 (h5py) does not recover
    from a full disk (it can end the process with a segmentation fault)."""
    try:
        st = os.statvfs(root)
    except OSError:
        return
    free = st.f_bavail * st.f_frsize
    if free < need:
        raise OutputWriteError(
            f"not enough space to import '{dataset_id}' into {root}: it needs about "
            f"{need / 1e6:.1f} MB, {free / 1e6:.1f} MB are free. Nothing was written; free some "
            "space or set MINARI_DATASETS_PATH to another folder."
        )


def _write(root, final, dataset_id, episodes, obs_space, act_space, metadata, overwrite) -> Any:
    from minari import MinariDataset
    from minari.dataset.minari_dataset import parse_dataset_id
    from minari.namespace import create_namespace, list_local_namespaces

    where = f"into the datasets folder {root} (MINARI_DATASETS_PATH)"
    try:
        os.makedirs(root, exist_ok=True)
        with _root_lock(root):
            clean_stale(root)
        # hidden (Minari lists skip it) and named after this process, for clean_stale
        tmp = tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{os.getpid()}-", dir=root)
    except OSError as e:
        raise OutputWriteError(
            f"cannot write {where}: {e.strerror or e}. Nothing was written; choose a folder you "
            "can write (set MINARI_DATASETS_PATH)."
        ) from None
    try:
        _check_free_space(root, _estimated_bytes(episodes, obs_space, act_space), dataset_id)
        os.chmod(tmp, 0o777 & ~umask())  # a dataset folder as mkdir makes it, not mkdtemp's 0700
        _write_hdf5(os.path.join(tmp, "data"), episodes, obs_space, act_space, metadata)
        with _root_lock(root):
            namespace = parse_dataset_id(dataset_id)[0]
            if namespace is not None and namespace not in list_local_namespaces():
                create_namespace(namespace)
            os.makedirs(os.path.dirname(final), exist_ok=True)
            old = None
            if os.path.lexists(final):
                if not overwrite:  # another import took the id while this one was writing
                    raise _taken(dataset_id, root)
                # overwrite: move the old one aside (with its id, for clean_stale), then swap
                old = tempfile.mkdtemp(prefix=f"{_OLD_PREFIX}{os.getpid()}-", dir=root)
                with open(os.path.join(old, "id"), "w") as f:
                    f.write(dataset_id)
                os.rename(final, os.path.join(old, "dataset"))
            try:
                # A rename onto a folder that is not empty fails: the no-overwrite check is the
                # rename's own, under the lock.
                os.rename(tmp, final)
            except OSError as e:
                if old is not None:  # put the old dataset back before reporting
                    os.rename(os.path.join(old, "dataset"), final)
                    shutil.rmtree(old, ignore_errors=True)
                if e.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR):
                    raise _taken(dataset_id, root) from None
                raise
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        why = e.strerror or str(e) or type(e).__name__
        raise OutputWriteError(
            f"could not write dataset '{dataset_id}' {where}: {why}. Nothing was written (the "
            "partial copy was removed)."
        ) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return MinariDataset(os.path.join(final, "data"))


def _write_hdf5(path, episodes, obs_space, act_space, metadata) -> None:
    """The dataset's files, written by `_write_child.py` in a child process; its failure (an
    exception, or a crash of h5py on a full disk) is an `OSError` naming the cause."""
    job = dict(
        path=path,
        observation_space=obs_space,
        action_space=act_space,
        metadata=metadata,
        episodes=episodes,
    )
    child = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_write_child.py")
    proc = subprocess.run(
        [sys.executable, child], input=pickle.dumps(job), capture_output=True, check=False
    )
    if proc.returncode == 0:
        return
    err = proc.stderr.decode(errors="replace")
    if "errno = 28" in err or "No space left" in err:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    if "errno = 122" in err or "Disk quota exceeded" in err:
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))
    lines = [x for x in err.strip().splitlines() if x.strip()]
    last = lines[-1].strip() if lines else f"exit status {proc.returncode}"
    raise OSError(errno.EIO, f"the HDF5 writer failed ({last})")


def _taken(dataset_id: str, root: str) -> DatasetExistsError:
    return DatasetExistsError(
        f"Dataset '{dataset_id}' already exists in {root} (another import wrote it first); pick "
        "another id or overwrite it (overwrite=True, --overwrite). This import wrote nothing."
    )


def describe(dataset: Any) -> dict[str, Any]:
    """A short summary of a dataset: episodes, transitions, mean return, env id, references."""
    returns = [float(np.sum(ep.rewards)) for ep in dataset.iterate_episodes()]
    meta = dataset.storage.metadata
    return {
        "episodes": len(returns),
        "transitions": int(dataset.total_steps),
        "mean_return": float(np.mean(returns)),
        "env_id": getattr(dataset.env_spec, "id", None),
        "ref_min_score": meta.get("ref_min_score"),
        "ref_max_score": meta.get("ref_max_score"),
        "provenance": meta.get("data_provenance"),
    }


__all__ = ["KNOWN_FILES", "import_dataset", "describe"]
