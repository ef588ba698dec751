r"""The embedded default dataset: Pendulum-v1 under scripted and random behaviour, built locally.

`python examples/d4rl_train.py` must run with no network, so its default dataset is generated on
first use with Minari's `DataCollector` and stored under `MINARI_DATASETS_PATH` like any other.

**Behaviour policy.** Gymnasium's pendulum obeys $\ddot\theta = 15 \sin\theta + 3u$,
$|u| \le 2$, with $\theta = 0$ upright. With $E = \tfrac12\dot\theta^2 + 15(\cos\theta - 1)$
(zero at the upright rest point, $-30$ hanging at rest) the torque changes the energy at rate
$\dot E = 3u\dot\theta$, so the controller

- pumps energy, $u = \operatorname{clip}(k_E \cdot (-E) \cdot \operatorname{sign}\dot\theta)$,
  while the pendulum is away from the top ($\cos\theta \le 0.9$),
- and stabilises with a PD law, $u = -(k_p\theta + k_d\dot\theta)$, near it.

The clean controller's and a uniformly random policy's returns are measured when the dataset is
built (`measure_reference_scores`) and stored as its reference scores (their values: README,
Quickstart). The dataset mixes random episodes with
controller episodes whose actions carry Gaussian noise of a per-episode standard deviation drawn
uniformly from $[0, \sigma_\max]$: a spread of qualities from near-optimal to random.
Everything is seeded, so the dataset is the same on every machine with the same Gymnasium.
"""

from __future__ import annotations

import fcntl
import math
import os
import shutil
import warnings
from typing import Any

import numpy as np

from ._data import datasets_root
from ._errors import ConfigError

DEFAULT_DATASET_ID = "sdepolicy/pendulum-mixed-v0"
ENV_ID = "Pendulum-v1"
MAX_TORQUE = 2.0
# Controller gains (k_p, k_d, k_E) and the switch to the stabiliser, cos θ > SWITCH_COS.
KP, KD, KE, SWITCH_COS = 10.0, 2.0, 1.0, 0.9
# Reference seeds are far from the dataset's so that the references are not fitted to it.
_REF_SEED_OFFSET = 1_000_000


def swing_up_action(obs: Any) -> float:
    """The clean energy-pumping swing-up plus PD stabiliser, from `[cos θ, sin θ, θ̇]`."""
    c, s, w = (float(v) for v in np.asarray(obs).reshape(3))
    if c > SWITCH_COS:
        u = -(KP * math.atan2(s, c) + KD * w)
    else:
        energy = 0.5 * w * w + 15.0 * (c - 1.0)
        u = KE * (-energy) * (1.0 if w >= 0.0 else -1.0)
    return min(max(u, -MAX_TORQUE), MAX_TORQUE)


def _run_episode(env: Any, seed: int, kind: str, noise_std: float, rng: np.random.Generator):
    obs, _ = env.reset(seed=seed)
    total, done = 0.0, False
    while not done:
        if kind == "random":
            u = rng.uniform(-MAX_TORQUE, MAX_TORQUE)
        else:
            u = swing_up_action(obs) + noise_std * rng.standard_normal()
        action = np.array([min(max(u, -MAX_TORQUE), MAX_TORQUE)], dtype=np.float32)
        obs, reward, terminated, truncated, _ = env.step(action)
        total += float(reward)
        done = terminated or truncated
    return total


def measure_reference_scores(num_episodes: int = 100, seed: int = 0) -> tuple[float, float]:
    """Mean returns of the uniformly random policy and of the clean controller.

    **Returns:**

    `(random_mean, controller_mean)` over `num_episodes` seeded episodes each; these are stored
    as the dataset's `ref_min_score` and `ref_max_score`.
    """
    import gymnasium as gym

    env = gym.make(ENV_ID, disable_env_checker=True)
    rng = np.random.default_rng(seed + _REF_SEED_OFFSET)
    seeds = [seed + _REF_SEED_OFFSET + i for i in range(num_episodes)]
    rand = [_run_episode(env, s, "random", 0.0, rng) for s in seeds]
    clean = [_run_episode(env, s, "controller", 0.0, rng) for s in seeds]
    env.close()
    return float(np.mean(rand)), float(np.mean(clean))


def _build(
    dataset_id: str,
    num_episodes: int,
    random_fraction: float,
    max_noise_std: float,
    num_ref_episodes: int,
    seed: int,
    marker: str | None = None,
) -> None:
    import gymnasium as gym
    import minari

    rng = np.random.default_rng(seed)
    n_random = int(round(num_episodes * random_fraction))
    kinds = np.array(["random"] * n_random + ["controller"] * (num_episodes - n_random))
    kinds = kinds[rng.permutation(num_episodes)]
    noise = rng.uniform(0.0, max_noise_std, size=num_episodes)
    ref_min, ref_max = measure_reference_scores(num_ref_episodes, seed)

    env = minari.DataCollector(gym.make(ENV_ID, disable_env_checker=True), record_infos=False)
    if marker is not None:
        # Where the collector buffers episodes, so that a killed build can be cleaned up.
        tmp = getattr(getattr(env, "_tmp_dir", None), "name", None)
        with open(marker, "w") as f:
            f.write(f"{os.path.basename(tmp)}\n" if tmp else "")
    for i in range(num_episodes):
        _run_episode(env, seed + i, str(kinds[i]), float(noise[i]), rng)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*author_email.*")
        env.create_dataset(
            dataset_id=dataset_id,
            eval_env=ENV_ID,
            algorithm_name=(
                f"scripted energy swing-up + PD with N(0, U(0, {max_noise_std})^2) action "
                f"noise, mixed with {random_fraction:.0%} uniform-random episodes"
            ),
            author="sdepolicy",
            code_permalink="sdepolicy/app/_default_dataset.py",
            description=(
                f"{num_episodes} Pendulum-v1 episodes of mixed quality (seed {seed}); "
                f"ref_min_score: random policy, ref_max_score: clean controller, "
                f"{num_ref_episodes} episodes each."
            ),
            ref_min_score=ref_min,
            ref_max_score=ref_max,
            num_episodes_average_score=num_ref_episodes,
        )
    env.close()


def ensure_default_dataset(
    dataset_id: str = DEFAULT_DATASET_ID,
    *,
    num_episodes: int = 200,
    random_fraction: float = 0.5,
    max_noise_std: float = 2.0,
    num_ref_episodes: int = 100,
    seed: int = 0,
) -> str:
    """Creates the embedded Pendulum dataset under `MINARI_DATASETS_PATH` unless it is there.

    Offline and deterministic; a few seconds on 2 CPU cores for the default 200 episodes (40,000
    transitions). A file lock in the datasets folder makes concurrent callers build it once; a
    dataset already built is used without the lock (a read-only store works), and what a killed
    build left behind (Minari's temporary folder, a partial dataset) is removed before the next.

    **Arguments:**

    - `dataset_id`: the Minari id to create.
    - `num_episodes`: episodes of 200 steps.
    - `random_fraction`: share of uniformly random episodes; the rest are noisy controller ones.
    - `max_noise_std`: controller episodes get action noise with std uniform in `[0, this]`.
    - `num_ref_episodes`: episodes for each reference score.
    - `seed`: seeds everything (episode `i` resets the environment with `seed + i`).

    **Returns:**

    `dataset_id`, ready for `load_transitions`.
    """
    if not 0.0 <= random_fraction <= 1.0:
        raise ValueError(f"random_fraction must be in [0, 1], got {random_fraction}.")
    root = datasets_root()
    if os.path.exists(root) and not os.path.isdir(root):
        raise ConfigError(
            f"the Minari datasets folder {root} (MINARI_DATASETS_PATH) is a file, not a folder."
        )
    data_path = os.path.join(root, dataset_id, "data")
    name = "." + dataset_id.replace("/", "__")
    marker = os.path.join(root, name + ".building")
    # A built dataset is used as it is, without the lock: a read-only store must work.
    if _complete(data_path) and not os.path.exists(marker):
        return dataset_id
    try:
        os.makedirs(root, exist_ok=True)
        lock = open(os.path.join(root, name + ".lock"), "w")
    except OSError as e:
        raise ConfigError(
            f"cannot build {dataset_id} in {root}: {e.strerror or e}. Point MINARI_DATASETS_PATH "
            "at a writable folder."
        ) from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            _clean_killed_build(root, dataset_id, marker)
            if not _complete(data_path):
                stale = os.path.dirname(data_path)
                if os.path.isdir(stale) and not os.listdir(stale):
                    os.rmdir(stale)  # left empty by a build that was killed
                _build(
                    dataset_id,
                    num_episodes,
                    random_fraction,
                    max_noise_std,
                    num_ref_episodes,
                    seed,
                    marker,
                )
                os.unlink(marker)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return dataset_id


def _complete(data_path: str) -> bool:
    """A finished build has both of Minari's files."""
    return all(
        os.path.isfile(os.path.join(data_path, f)) for f in ("main_data.hdf5", "metadata.json")
    )


def _clean_killed_build(root: str, dataset_id: str, marker: str) -> None:
    """Undo a build that was killed: its marker names the temporary folder Minari's
    `DataCollector` made in the datasets root (left behind by a kill, and listed by
    `minari.list_local_datasets` as a dataset), and the dataset folder is incomplete."""
    if not os.path.exists(marker):
        return
    with open(marker) as f:
        names = [line.strip() for line in f if line.strip()]
    for tmp in names:
        path = os.path.join(root, tmp)
        # Only a folder directly in the root, named as tempfile names them.
        if os.path.basename(tmp) == tmp and tmp.startswith("tmp") and os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
    partial = os.path.join(root, dataset_id)
    if os.path.isdir(partial):
        shutil.rmtree(partial, ignore_errors=True)
    os.unlink(marker)
