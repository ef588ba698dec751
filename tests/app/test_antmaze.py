"""D4RL's AntMaze task from Minari-style data (docs/method.md §12.3): a small AntMaze dataset
collected with Minari's DataCollector as Minari's were (continuing task, no terminations), read
with the antmaze preset's options: 29-d observation without the goal, terminals at the goal
steps, and evaluation that ends at the goal and scores a success rate."""

import gymnasium as gym
import jax
import numpy as np
import pytest

pytest.importorskip("gymnasium_robotics")

import gymnasium_robotics  # noqa: E402,F401  (registers AntMaze)

from sdepolicy.app import _data as data_lib  # noqa: E402
from sdepolicy.app import get_preset  # noqa: E402
from sdepolicy.app._evaluation import run_episodes_stats  # noqa: E402
from sdepolicy.app._scores import reference_scores, success_rate  # noqa: E402

PRESET = get_preset("antmaze-umaze-v0")
ENV_ID = "AntMaze_UMaze-v4"


class GoalAtStart(gym.Wrapper):
    """Puts the goal where the ant starts (so a goal is reached within a few random steps), on
    every `every`-th reset (the others keep the maze's own, distant goal)."""

    def __init__(self, env, every=1):
        super().__init__(env)
        self.every, self.resets = every, 0

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.resets += 1
        if (self.resets - 1) % self.every:
            return obs, info
        ant = self.env.unwrapped
        ant.goal = obs["achieved_goal"].copy()
        obs = dict(obs, desired_goal=ant.goal.copy())
        return obs, info


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from minari import DataCollector

    root = tmp_path_factory.mktemp("minari")
    mp = pytest.MonkeyPatch()
    mp.setenv("MINARI_DATASETS_PATH", str(root))
    # Minari's collection settings: a continuing task whose target stays put.
    env = GoalAtStart(gym.make(ENV_ID, continuing_task=True, reset_target=False,
                               max_episode_steps=30), every=2)  # fmt: skip
    collector = DataCollector(env)
    rng = np.random.default_rng(0)
    for episode in range(3):
        collector.reset(seed=episode)
        done = False
        while not done:
            _, _, term, trunc, _ = collector.step(rng.uniform(-0.3, 0.3, 8).astype(np.float32))
            done = term or trunc
    ds = collector.create_dataset(dataset_id="test/antmaze-tiny-v0", algorithm_name="random")
    collector.close()
    yield ds
    mp.undo()


def test_minari_antmaze_data_never_terminate_and_carry_the_goal(dataset):
    episodes = list(dataset.iterate_episodes())
    assert all(not np.any(ep.terminations) for ep in episodes)  # a continuing task
    assert sum(float(np.sum(ep.rewards)) for ep in episodes) > 0  # goal steps, rewarded 1
    raw = data_lib.load_transitions("test/antmaze-tiny-v0")[0]
    assert raw.obs_dim == 31  # sorted-key flattening: goal-conditioned
    assert float(raw.terminals.sum()) == 0


def test_preset_options_give_d4rl_observation_and_goal_terminals(dataset):
    t, _ = data_lib.load_transitions(
        "test/antmaze-tiny-v0",
        observation_keys=PRESET.observation_keys,
        terminal_rule=PRESET.terminal_rule,
    )
    ep = next(iter(dataset.iterate_episodes()))
    obs = ep.observations
    # D4RL's 29-d layout: torso x, y then the rest of qpos and qvel; no desired goal.
    assert t.obs_dim == 29
    want = np.concatenate([obs["achieved_goal"][:-1], obs["observation"][:-1]], axis=1)
    want = want.astype(np.float32)  # the loader stores float32
    np.testing.assert_array_equal(np.asarray(t.observations[: len(want)]), want)
    rewards, terminals = np.asarray(t.rewards), np.asarray(t.terminals)
    np.testing.assert_array_equal(terminals, (rewards >= 1).astype(np.float32))
    assert 0 < terminals.sum() < terminals.size
    env = gym.make(ENV_ID)
    data_lib.check_spaces(t, env, observation_keys=PRESET.observation_keys)
    with pytest.raises(data_lib.SpaceMismatchError):
        data_lib.check_spaces(t, env)
    env.close()
    assert data_lib.relabel_terminals(np.array([0.0, 1.0]), np.array([0, 0]), "dataset").sum() == 0
    with pytest.raises(data_lib.ConfigError):
        data_lib.relabel_terminals(np.zeros(2), np.zeros(2), "goal")


def test_episodic_evaluation_scores_a_success_rate():
    """With the preset's `continuing_task=False` the episode ends at the goal: return 1 and
    success there, 0 elsewhere; the score is the percentage of successes."""
    made = []

    def make_env():
        env = gym.make(ENV_ID, **PRESET.eval_env_kwargs)
        made.append(env)
        return GoalAtStart(env) if len(made) % 2 else env  # goal reachable in env 0, 2

    act = lambda obs, key: np.zeros((obs.shape[0], 8), np.float32)
    ep = run_episodes_stats(make_env, act, 4, jax.random.key(0), max_steps=5,
                            observation_keys=PRESET.observation_keys)  # fmt: skip
    np.testing.assert_array_equal(ep.successes, [True, False, True, False])
    np.testing.assert_array_equal(ep.returns, [1.0, 0.0, 1.0, 0.0])
    assert list(ep.lengths[[0, 2]]) == [1, 1]  # terminated at the goal
    assert success_rate(ep.successes) == 50.0
    np.testing.assert_allclose(success_rate(ep.successes.reshape(2, 2)), [50.0, 50.0])
    # D4RL's 0/1 references, whatever a dataset's metadata say.
    assert reference_scores(task=PRESET.name, prefer="d4rl")[:2] == (0.0, 1.0)
