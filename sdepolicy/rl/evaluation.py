"""Policy evaluation in Gymnasium: many episodes at once through a vector environment.

All seeds' episodes step together in one `SyncVectorEnv`; the actions for every environment come
from one jitted, batched call of the agent's action selection. This is what makes evaluation of a
64-critic, 50-candidate policy affordable (see `benchmarks/`).
"""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import jax
import numpy as np

from .._typing import PRNGKey
from .data import flatten_observation

#: Batched action selection: ``(observations[n, obs], key) -> actions[n, act]``.
BatchActFn = Callable[[np.ndarray, PRNGKey], np.ndarray]


def run_episodes(
    make_env: Callable[[], gym.Env],
    act: BatchActFn,
    num_episodes: int,
    key: PRNGKey,
    *,
    seed: int = 0,
    max_steps: int | None = None,
) -> np.ndarray:
    """Run `num_episodes` episodes in parallel and return their undiscounted returns.

    **Arguments:**

    - `make_env`: builds one environment (e.g. `dataset.recover_environment`).
    - `act`: batched action selection over all running environments at once.
    - `num_episodes`: number of environments stepped together, one episode each.
    - `key`: PRNG key for the policy's sampling (split once per environment step).
    - `seed`: environment seed; environment `i` is reset with `seed + i`.
    - `max_steps`: optional cap on steps (otherwise the environments' own time limits end them).

    **Returns:** an array of shape ``(num_episodes,)`` of returns.
    """
    envs = gym.vector.SyncVectorEnv(
        [make_env for _ in range(num_episodes)], autoreset_mode=gym.vector.AutoresetMode.DISABLED
    )
    try:
        obs, _ = envs.reset(seed=[seed + i for i in range(num_episodes)])
        returns = np.zeros(num_episodes)
        done = np.zeros(num_episodes, dtype=bool)
        step = 0
        while not done.all():
            key, sub = jax.random.split(key)
            actions = np.asarray(act(flatten_observation(obs, batch_ndim=1), sub))
            actions = np.clip(actions, envs.single_action_space.low, envs.single_action_space.high)
            obs, rewards, terminated, truncated, _ = envs.step(actions)
            returns += np.where(done, 0.0, rewards)
            done |= np.asarray(terminated) | np.asarray(truncated)
            step += 1
            if max_steps is not None and step >= max_steps:
                break
        return returns
    finally:
        envs.close()


def run_episodes_one_at_a_time(
    make_env: Callable[[], gym.Env],
    act: BatchActFn,
    num_episodes: int,
    key: PRNGKey,
    *,
    seed: int = 0,
) -> np.ndarray:
    """The baseline the vectorised evaluation is measured against: one environment, one
    episode after another, one action per call."""
    env = make_env()
    try:
        returns = np.zeros(num_episodes)
        for i in range(num_episodes):
            obs, _ = env.reset(seed=seed + i)
            done = False
            while not done:
                key, sub = jax.random.split(key)
                batch = jax.tree.map(lambda v: np.asarray(v)[None], obs)
                action = np.asarray(act(flatten_observation(batch, batch_ndim=1), sub))[0]
                action = np.clip(action, env.action_space.low, env.action_space.high)
                obs, reward, terminated, truncated, _ = env.step(action)
                returns[i] += reward
                done = terminated or truncated
        return returns
    finally:
        env.close()
