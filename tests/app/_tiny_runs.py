"""The tiny runs that `test_faults.py` and `test_reliability_run.py` share: one configuration and
same-shaped Pendulum datasets (two 100-step episodes of uniform random actions), so that the
training and evaluation code compiles once per process."""

import shutil

import gymnasium as gym
import minari
import numpy as np

from sdepolicy.app import RunSpec

TINY = "test/faults-tiny-v0"
TINY_CFG = {
    "hidden": 8,
    "num_critics": 2,
    "batch_size": 16,
    "eval_candidates": 2,
    "ema_start": 5,
    "diffusion_steps": 3,
}
EPISODES, EPISODE_STEPS = 2, 100


class _ScaledReward(gym.Wrapper, gym.utils.RecordConstructorArgs):
    def __init__(self, env, scale=1.0):
        gym.utils.RecordConstructorArgs.__init__(self, scale=scale)
        gym.Wrapper.__init__(self, env)
        self.scale = scale

    def step(self, action):
        obs, r, term, trunc, info = self.env.step(action)
        return obs, self.scale * float(r), term, trunc, info


def collect(dataset_id, *, scale=1.0, reward_scale=1.0, **metadata):
    """`EPISODES` Pendulum episodes of `EPISODE_STEPS` uniform random actions in
    `scale` x [-2, 2] (the action box when 1), rewards times `reward_scale`, stored as
    `dataset_id` in the current Minari store; `metadata` go to `create_dataset`."""
    env = gym.make("Pendulum-v1", max_episode_steps=EPISODE_STEPS)
    env = minari.DataCollector(_ScaledReward(env, reward_scale) if reward_scale != 1.0 else env)
    rng = np.random.default_rng(0)
    for ep in range(EPISODES):
        env.reset(seed=ep)
        for _ in range(EPISODE_STEPS):
            env.step((scale * rng.uniform(-2.0, 2.0, size=1)).astype(np.float32))
    env.create_dataset(
        dataset_id=dataset_id,
        ref_min_score=-1000.0,
        ref_max_score=0.0,
        eval_env=gym.make("Pendulum-v1", max_episode_steps=EPISODE_STEPS).spec,
        **metadata,
    )
    env.close()


def tiny_spec(out, **kw):
    """A 20-step run on `TINY` (one evaluation of one episode, chunks of 10) into `out`; `kw`
    replace any of its fields."""
    base = dict(
        task="pendulum-mixed",
        dataset=(TINY,),
        steps=20,
        eval_every=20,
        eval_episodes=1,
        steps_per_call=10,
        out=str(out),
        overrides=TINY_CFG,
        progress=False,
    )
    base.update(kw)
    return RunSpec(**base)


def copy_run(src, tmp_path, name="copy"):
    """A copy of the run folder `src` under `tmp_path` (without its lock file), to change."""
    dst = tmp_path / name
    shutil.copytree(src, dst)
    (dst / ".lock").unlink(missing_ok=True)
    return dst
