"""Offline-RL files recorded by others, written as local Minari datasets.

[`import_dataset`][] reads a file with [`read_episodes`][], validates everything (lengths,
finite values, dimensions and the action box of the environment, optionally a replay check),
and only then writes the dataset: into a hidden folder inside the datasets root, renamed into
place at the end, so a failure leaves nothing behind and an overwritten dataset is replaced in
one step. The environment does not have to be installable: its spec and spaces come from
Gymnasium when it is, else from a small table (`AdroitHandDoor-v1` without gymnasium-robotics).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import warnings
from typing import Any

import numpy as np

from .._data import datasets_root, episodes_to_transitions, space_dim
from .._errors import (
    ConfigError,
    DatasetExistsError,
    DataValidationError,
    EnvMismatchError,
    MissingExtraError,
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


def _validate_id(dataset_id: str) -> None:
    from minari.dataset.minari_dataset import parse_dataset_id

    try:
        parse_dataset_id(dataset_id)
    except ValueError:
        raise ConfigError(
            f"Malformed dataset id '{dataset_id}': use (namespace/)name-vN, e.g. "
            f"'imported/pendulum-random-v0'."
        ) from None


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

    - `path`: the file (see [`read_episodes`][] for the formats).
    - `dataset_id`: the Minari id to create under `MINARI_DATASETS_PATH`, `(namespace/)name-vN`.
    - `env_id`: the Gymnasium id the data was recorded in; stored as the dataset's environment
      and evaluation environment. Defaults to [`KNOWN_FILES`][]'s for a known file.
    - `format`: `"auto"` or a format name of [`read_episodes`][].
    - `ref_min_score`, `ref_max_score`: reference returns for normalised scores (both or
      neither); default [`KNOWN_FILES`][]'s.
    - `provenance`: a free text stored with the automatic provenance (file name, sha256,
      format, and the source and licence of a known file).
    - `overwrite`: replace an existing dataset of the same id.
    - `check_replay_steps`: replay this many transitions first with [`check_replay`][] and
      refuse the data when they do not match.
    - `clip_actions`: clip actions into the environment's box instead of refusing them (for
      environments that clip in `step`); default [`KNOWN_FILES`][]'s, else False.

    **Returns:**

    The new `minari.MinariDataset`; its metadata carries `env_spec`/`eval_env_spec`,
    `ref_min_score`/`ref_max_score` when known, and `data_provenance` (also in `description`),
    plus `replay_check` when one was run.

    **Raises:**

    [`DatasetExistsError`][] (the id exists and not `overwrite`), [`ConfigError`][] (bad id,
    format or arguments), [`DataValidationError`][] (malformed data, actions outside the box),
    [`SpaceMismatchError`][] (dimensions differ from the environment's), [`EnvMismatchError`][]
    (the replay check failed). Nothing is written when any is raised.
    """
    _validate_id(dataset_id)
    root = datasets_root()
    final = os.path.join(root, dataset_id)
    if os.path.exists(final) and not overwrite:
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
    return _write(root, final, dataset_id, episodes, obs_space, act_space, metadata)


def _write(root, final, dataset_id, episodes, obs_space, act_space, metadata) -> Any:
    import minari
    from minari import MinariDataset
    from minari.data_collector import EpisodeBuffer
    from minari.dataset.minari_dataset import parse_dataset_id
    from minari.dataset.minari_storage import MinariStorage
    from minari.namespace import create_namespace, list_local_namespaces

    os.makedirs(root, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".import-", dir=root)  # hidden: Minari lists skip it
    try:
        storage = MinariStorage.new(
            os.path.join(tmp, "data"), observation_space=obs_space, action_space=act_space
        )
        metadata["minari_version"] = minari.__version__
        storage.update_metadata(metadata)
        storage.update_episodes(
            EpisodeBuffer(
                id=i,
                observations=ep["observations"].astype(obs_space.dtype),
                actions=ep["actions"].astype(act_space.dtype),
                rewards=ep["rewards"],
                terminations=ep["terminations"],
                truncations=ep["truncations"],
                infos={},
            )
            for i, ep in enumerate(episodes)
        )
        namespace = parse_dataset_id(dataset_id)[0]
        if namespace is not None and namespace not in list_local_namespaces():
            create_namespace(namespace)
        os.makedirs(os.path.dirname(final), exist_ok=True)
        old = None
        if os.path.exists(final):  # overwrite: move the old one aside, then swap
            old = tempfile.mkdtemp(prefix=".replaced-", dir=root)
            os.rename(final, os.path.join(old, "dataset"))
        os.rename(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return MinariDataset(os.path.join(final, "data"))


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
