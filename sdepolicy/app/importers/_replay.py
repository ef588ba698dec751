r"""Replaying stored transitions in their environment, to catch data paired with the wrong one.

For a transition $(o_t, a_t, r_t, o_{t+1})$ the environment is put in the state that $o_t$
describes, steps $a_t$, and its observation and reward are compared with $o_{t+1}$ and $r_t$.
Setting a state from an observation is environment-specific; supported:

- `Pendulum-v1`: $\theta = \operatorname{atan2}(\sin\theta, \cos\theta)$, $\dot\theta$.
- Gymnasium's MuJoCo Hopper, HalfCheetah, Walker2d, Ant (v4 and v5 without contact forces),
  Swimmer: the observation is `qpos` without its first one (two for Ant and Swimmer)
  coordinates, then `qvel`; the unobserved x (and y) position is set to 0, which leaves the
  rewards unchanged (they use the x difference over the step, not x). Hopper and Walker2d
  clip the observed velocities to $\pm 10$: a transition whose $o_t$ has a velocity at the clip
  does not tell the state and is skipped.

Real datasets replay exactly at most transitions but not at all of them (old Gym's Pendulum
clipped $\dot\theta$ after integrating $\theta$, MuJoCo versions differ at contacts, Ant's
forward reward uses a body position computed before the last substep), so the check judges the
**median** errors against `OBS_TOLERANCE` and `REWARD_TOLERANCE` and reports the largest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .._errors import SpaceMismatchError

#: Median absolute errors above these mean the data do not come from this environment.
OBS_TOLERANCE = 1e-3
REWARD_TOLERANCE = 1e-2
_VELOCITY_CLIP = 10.0
_MUJOCO_LOCOMOTION = ("HopperEnv", "HalfCheetahEnv", "Walker2dEnv", "AntEnv", "SwimmerEnv")


def _pendulum_setter(env: Any):
    def set_state(obs: np.ndarray) -> bool:
        env.state = np.array([np.arctan2(obs[1], obs[0]), obs[2]], dtype=np.float64)
        return True

    return set_state


def _mujoco_setter(env: Any, obs_dim: int):
    nq, nv = int(env.model.nq), int(env.model.nv)
    hidden = nq + nv - obs_dim  # leading qpos entries the observation leaves out
    if hidden not in (1, 2):
        return None

    clipped = type(env).__name__ in ("HopperEnv", "Walker2dEnv")

    def set_state(obs: np.ndarray) -> bool:
        qvel = obs[nq - hidden : nq - hidden + nv]
        if clipped and np.max(np.abs(qvel)) >= _VELOCITY_CLIP - 1e-6:
            return False
        env.set_state(np.concatenate([np.zeros(hidden), obs[: nq - hidden]]), qvel)
        return True

    return set_state


def _state_setter(env: Any, obs_dim: int):
    """A function that puts `env` (unwrapped) in the state of an observation (False when the
    observation does not determine it), or None when the environment is not supported."""
    name = type(env).__name__
    if name == "PendulumEnv" and obs_dim == 3:
        return _pendulum_setter(env)
    if name in _MUJOCO_LOCOMOTION and hasattr(env, "set_state"):
        return _mujoco_setter(env, obs_dim)
    return None


def check_replay(
    episodes: Sequence[Mapping[str, np.ndarray]], env_id: str, num_transitions: int = 200
) -> dict[str, Any]:
    """Replays stored transitions in an environment and reports the largest mismatch.

    **Arguments:**

    - `episodes`: episodes as `read_episodes` returns them.
    - `env_id`: the Gymnasium id to replay in (made with `gym.make`).
    - `num_transitions`: how many transitions, spread evenly over the whole dataset.

    **Returns:**

    A dict with `transitions` (how many were replayed), `max_obs_error` and `max_reward_error`
    (largest absolute differences), `median_obs_error` and `median_reward_error`, `ok` (both
    medians within the tolerances), `supported` (whether the state can be set from an
    observation for this environment; the errors and `ok` are None when not, `ok` also when
    no transition could be replayed) and `note`.

    **Raises:**

    `SpaceMismatchError` when the observation or action dimension of the data is not the
    environment's (naming both); `MissingExtraError` or `SdepolicyError` when the
    environment cannot be made.
    """
    from .._data import recover_env, space_dim

    env = recover_env(None, task_env_id=env_id)
    try:
        obs_dim = int(episodes[0]["observations"].shape[1])
        act_dim = int(episodes[0]["actions"].shape[1])
        want = (space_dim(env.observation_space), space_dim(env.action_space))
        if (obs_dim, act_dim) != want:
            raise SpaceMismatchError(
                f"The data and environment '{env_id}' disagree: data observations ({obs_dim},), "
                f"actions ({act_dim},); environment observations ({want[0]},), actions "
                f"({want[1]},). Is this the environment (and version) the data was recorded in?"
            )
        env.reset(seed=0)
        raw = env.unwrapped
        set_state = _state_setter(raw, obs_dim)
        if set_state is None:
            return {
                "transitions": 0,
                "max_obs_error": None,
                "max_reward_error": None,
                "median_obs_error": None,
                "median_reward_error": None,
                "supported": False,
                "ok": None,
                "note": f"replay is not supported for '{env_id}' ({type(raw).__name__}): its "
                "state cannot be set from an observation (supported: Pendulum, MuJoCo "
                "Hopper/HalfCheetah/Walker2d/Ant/Swimmer)",
            }
        index = [(e, t) for e, ep in enumerate(episodes) for t in range(len(ep["rewards"]))]
        n = min(int(num_transitions), len(index))
        picks = np.unique(np.linspace(0, len(index) - 1, n).round().astype(int)) if n else []
        obs_err, rew_err = [], []
        dtype = env.action_space.dtype
        for k in picks:
            e, t = index[k]
            ep = episodes[e]
            if not set_state(np.asarray(ep["observations"][t], dtype=np.float64)):
                continue
            nxt, r, *_ = raw.step(np.asarray(ep["actions"][t], dtype=dtype))
            nxt = np.asarray(nxt, dtype=np.float64).reshape(-1)
            obs_err.append(float(np.max(np.abs(nxt - ep["observations"][t + 1]))))
            rew_err.append(abs(float(r) - float(ep["rewards"][t])))
        replayed, skipped = len(rew_err), len(picks) - len(rew_err)
        if not replayed:
            obs_err = rew_err = [float("nan")]
        return {
            "transitions": replayed,
            "max_obs_error": float(np.max(obs_err)),
            "max_reward_error": float(np.max(rew_err)),
            "median_obs_error": float(np.median(obs_err)),
            "median_reward_error": float(np.median(rew_err)),
            "supported": True,
            "ok": (
                bool(np.median(obs_err) <= OBS_TOLERANCE and np.median(rew_err) <= REWARD_TOLERANCE)
                if replayed
                else None
            ),
            "note": f"replayed {replayed} transitions in {env_id}"
            + (f" ({skipped} skipped: velocity at the observation clip)" if skipped else ""),
        }
    finally:
        env.close()
