"""Evaluation-environment wrappers that restore D4RL's episode semantics where Gymnasium's
port of an environment differs (docs/method.md §12).

A task preset names its wrappers in `eval_wrappers`; the run applies them, in order, to every
evaluation environment it makes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym

#: Height (m) of the pen's centre of mass below which D4RL's `PenEnvV0` ends the episode.
PEN_DROP_HEIGHT = 0.075


class PenDropTermination(gym.Wrapper):
    """Ends an Adroit pen episode when the pen drops, as D4RL's `PenEnvV0.step` does.

    D4RL's pen environment returns `done = True` as soon as the pen's centre of mass is below
    0.075 m (the same test that gives the −5 "dropped" penalty); gymnasium-robotics'
    `AdroitHandPen-v1` keeps that penalty but never terminates, so a policy that drops the pen
    keeps collecting −5-penalised rewards until the time limit and scores below what D4RL's
    protocol would give it. The wrapper reads the pen's height from the simulator (body
    `Object`) after each step and sets `terminated`. Its reward is unchanged.
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        base = env.unwrapped
        if not hasattr(base, "obj_body_id") or not hasattr(base, "data"):
            raise TypeError(
                "PenDropTermination wraps gymnasium-robotics' AdroitHandPen environments; "
                f"{type(base).__name__} has no pen body."
            )

    def pen_height(self) -> float:
        base = self.env.unwrapped
        return float(base.data.xpos[base.obj_body_id][2])

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        dropped = self.pen_height() < PEN_DROP_HEIGHT
        info = dict(info, pen_dropped=dropped)
        return obs, reward, bool(terminated or dropped), truncated, info


#: Wrappers by the name a preset gives them.
EVAL_WRAPPERS: dict[str, Callable[[gym.Env], gym.Env]] = {"pen_drop": PenDropTermination}


def wrapped(make_env: Callable[[], Any], names: Sequence[str]) -> Callable[[], Any]:
    """`make_env` whose environments are wrapped by the named wrappers, in order."""
    unknown = [n for n in names if n not in EVAL_WRAPPERS]
    if unknown:
        raise ValueError(
            f"Unknown evaluation wrapper(s) {unknown}; known: {sorted(EVAL_WRAPPERS)}."
        )
    if not names:
        return make_env

    def make():
        env = make_env()
        for name in names:
            env = EVAL_WRAPPERS[name](env)
        return env

    return make
