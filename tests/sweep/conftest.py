"""Tiny datasets and a tiny sweep for the sweep's tests: two 100-step Pendulum episodes (as in
tests/app/test_faults.py), and two of MountainCarContinuous, whose observations have another
size, so that a source concatenating the two fails inside its run."""

import gymnasium as gym
import minari
import numpy as np
import pytest

TINY = "test/sweep-tiny-v0"
OTHER = "test/sweep-mountaincar-v0"
EPISODES, EPISODE_STEPS = 2, 100

#: A sweep of ~20-step runs with tiny networks (the overrides an agent lacks are not applied).
TINY_SWEEP = """
out = "{out}"
agents = ["bc"]
seeds = [0, 1]
datasets = [{{name = "tiny", ids = ["test/sweep-tiny-v0"]}},
            {{name = "broken", ids = ["test/sweep-tiny-v0", "test/sweep-mountaincar-v0"]}}]

[budget]
steps = 20
eval_every = 10
eval_episodes = 1
final_eval_episodes = 1
steps_per_call = 10

[set]
hidden = 16
num_critics = 2
batch_size = 16
eval_candidates = 4
ema_start = 0
diffusion_steps = 3
"""


def _collect(dataset_id, env_id, ref):
    env = minari.DataCollector(gym.make(env_id, max_episode_steps=EPISODE_STEPS))
    rng = np.random.default_rng(0)
    for ep in range(EPISODES):
        env.reset(seed=ep)
        for _ in range(EPISODE_STEPS):
            env.step(rng.uniform(-1.0, 1.0, size=1).astype(np.float32))
    env.create_dataset(
        dataset_id=dataset_id,
        ref_min_score=ref[0],
        ref_max_score=ref[1],
        eval_env=gym.make(env_id, max_episode_steps=EPISODE_STEPS).spec,
    )
    env.close()


@pytest.fixture(scope="module")
def tiny_datasets(minari_store):
    _collect(TINY, "Pendulum-v1", (-1000.0, 0.0))
    _collect(OTHER, "MountainCarContinuous-v0", (-50.0, 100.0))
    return minari_store


@pytest.fixture(scope="module")
def sweep_file(tiny_datasets, tmp_path_factory):
    folder = tmp_path_factory.mktemp("sweep")
    path = folder / "sweep.toml"
    path.write_text(TINY_SWEEP.format(out=folder / "out"))
    return path
