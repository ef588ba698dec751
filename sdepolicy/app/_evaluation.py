"""Policy evaluation in Gymnasium: many episodes at once.

All episodes step together; the actions for every environment come from one jitted, batched call
of the agent's action selection. This is what makes evaluation of a 64-critic, 50-candidate
policy affordable (see `benchmarks/`). Episodes may end at different steps (Hopper, Walker and
AntMaze terminate early): an environment whose episode has ended is not stepped again, and the
batch keeps its shape (its last observation stays in the batch and its action is dropped), so
the action selection compiles once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import gymnasium as gym
import jax
import numpy as np

from .._typing import PRNGKey
from ._data import flatten_observation

#: Batched action selection: ``(observations[n, obs], key) -> actions[n, act]``.
BatchActFn = Callable[[np.ndarray, PRNGKey], np.ndarray]


@dataclasses.dataclass(frozen=True)
class EpisodeStats:
    """What `run_episodes_stats` measures, one entry per episode.

    - `returns`: undiscounted returns.
    - `successes`: whether `info["success"]` was true at any step (AntMaze's goal reached,
      Adroit's goal achieved); False where the environment reports no success.
    - `lengths`: steps taken.
    """

    returns: np.ndarray
    successes: np.ndarray
    lengths: np.ndarray


def run_episodes(
    make_env: Callable[[], gym.Env],
    act: BatchActFn,
    num_episodes: int,
    key: PRNGKey,
    *,
    seed: int = 0,
    max_steps: int | None = None,
    observation_keys: Sequence[str] | None = None,
) -> np.ndarray:
    """Run `num_episodes` episodes in parallel and return their undiscounted returns (the
    `returns` of `run_episodes_stats`, which takes the same arguments)."""
    return run_episodes_stats(
        make_env,
        act,
        num_episodes,
        key,
        seed=seed,
        max_steps=max_steps,
        observation_keys=observation_keys,
    ).returns


def run_episodes_stats(
    make_env: Callable[[], gym.Env],
    act: BatchActFn,
    num_episodes: int,
    key: PRNGKey,
    *,
    seed: int = 0,
    max_steps: int | None = None,
    observation_keys: Sequence[str] | None = None,
) -> EpisodeStats:
    """Run `num_episodes` episodes in parallel; their returns, successes and lengths.

    **Arguments:**

    - `make_env`: builds one environment (e.g. `dataset.recover_environment`).
    - `act`: batched action selection over all running environments at once.
    - `num_episodes`: number of environments stepped together, one episode each.
    - `key`: PRNG key for the policy's sampling (split once per environment step).
    - `seed`: environment seed; environment `i` is reset with `seed + i`.
    - `max_steps`: optional cap on steps (otherwise the environments' own time limits end them).
    - `observation_keys`: for dictionary observations, the keys the policy sees, in order
      (`sdepolicy.app.flatten_observation`; the data must be flattened the same way).

    **Returns:** an `EpisodeStats` of arrays of shape ``(num_episodes,)``.
    """
    flat = lambda o: flatten_observation(o, keys=observation_keys)
    envs = [make_env() for _ in range(num_episodes)]
    try:
        obs = np.stack([flat(env.reset(seed=seed + i)[0]) for i, env in enumerate(envs)])
        space = envs[0].action_space
        returns = np.zeros(num_episodes)
        successes = np.zeros(num_episodes, dtype=bool)
        lengths = np.zeros(num_episodes, dtype=np.int64)
        running = np.ones(num_episodes, dtype=bool)
        step = 0
        while running.any():
            key, sub = jax.random.split(key)
            actions = np.clip(np.asarray(act(obs, sub)), space.low, space.high)
            for i in np.flatnonzero(running):
                o, reward, terminated, truncated, info = envs[i].step(actions[i])
                returns[i] += float(reward)
                successes[i] |= bool(info.get("success", False))
                lengths[i] += 1
                obs[i] = flat(o)
                running[i] = not (terminated or truncated)
            step += 1
            if max_steps is not None and step >= max_steps:
                break
        return EpisodeStats(returns=returns, successes=successes, lengths=lengths)
    finally:
        for env in envs:
            env.close()
