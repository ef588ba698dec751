"""The data layer: episodes → transitions, flattening, validation, loading, spaces, rewards."""

from __future__ import annotations

import gymnasium as gym
import jax.numpy as jnp
import minari
import numpy as np
import pytest

from sdepolicy.app import (
    ConfigError,
    DatasetNotFoundError,
    DataValidationError,
    MissingExtraError,
    SdepolicyError,
    SpaceMismatchError,
)
from sdepolicy.app._data import (
    check_spaces,
    episodes_to_transitions,
    flatten_observation,
    load_transitions,
    recover_env,
    space_dim,
    transform_rewards,
)
from sdepolicy.rl import Transitions


def _episode(ep_id, obs, actions, rewards, terminations, truncations):
    return minari.EpisodeData(
        id=ep_id,
        observations=obs,
        actions=np.asarray(actions, dtype=np.float32),
        rewards=np.asarray(rewards, dtype=np.float64),
        terminations=np.asarray(terminations, dtype=bool),
        truncations=np.asarray(truncations, dtype=bool),
        infos={},
    )


@pytest.fixture
def two_episodes():
    # Episode 0 terminates after 3 steps; episode 1 is cut by a time limit after 2 steps.
    obs0 = np.arange(8, dtype=np.float64).reshape(4, 2)  # T + 1 = 4 observations
    obs1 = 100 + np.arange(6, dtype=np.float64).reshape(3, 2)
    ep0 = _episode(0, obs0, [[0.1], [0.2], [0.3]], [1, 2, 3], [0, 0, 1], [0, 0, 0])
    ep1 = _episode(1, obs1, [[-0.1], [-0.2]], [10, 20], [0, 0], [0, 1])
    return ep0, ep1


@pytest.fixture
def minari_path(tmp_path, monkeypatch):
    path = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(path))
    return path


def test_transitions_from_episodes(two_episodes):
    t = episodes_to_transitions(two_episodes)
    assert isinstance(t, Transitions) and len(t) == 5
    assert t.observations.dtype == jnp.float32
    np.testing.assert_array_equal(t.observations, [[0, 1], [2, 3], [4, 5], [100, 101], [102, 103]])
    # s' is the next observation of the same episode, including the final one (o_T).
    np.testing.assert_array_equal(
        t.next_observations, [[2, 3], [4, 5], [6, 7], [102, 103], [104, 105]]
    )
    np.testing.assert_allclose(t.actions[:, 0], [0.1, 0.2, 0.3, -0.1, -0.2])
    np.testing.assert_array_equal(t.rewards, [1, 2, 3, 10, 20])
    # Termination is a terminal; the time-limit truncation of episode 1 is not.
    np.testing.assert_array_equal(t.terminals, [0, 0, 1, 0, 0])


def test_wrong_number_of_observations_is_reported(two_episodes):
    ep0, _ = two_episodes
    short = _episode(7, ep0.observations[:3], ep0.actions, ep0.rewards, [0, 0, 1], [0, 0, 0])
    with pytest.raises(DataValidationError, match=r"episode 7 has 3 observations.*expected 4"):
        episodes_to_transitions([short])


def test_inconsistent_dimensions_are_reported(two_episodes):
    ep0, _ = two_episodes
    wide = _episode(3, np.zeros((3, 5)), [[0.0], [0.0]], [0, 0], [0, 0], [0, 1])
    with pytest.raises(DataValidationError, match="observation dimension 5"):
        episodes_to_transitions([ep0, wide])


def test_non_finite_values_are_counted_per_field(two_episodes):
    ep0, ep1 = two_episodes
    obs = ep0.observations.copy()
    obs[1, 0], obs[3, 1] = np.nan, np.inf
    rewards = ep1.rewards.copy()
    rewards[0] = -np.inf
    bad0 = _episode(0, obs, ep0.actions, ep0.rewards, ep0.terminations, ep0.truncations)
    bad1 = _episode(1, ep1.observations, ep1.actions, rewards, ep1.terminations, ep1.truncations)
    with pytest.raises(DataValidationError) as info:
        episodes_to_transitions([bad0, bad1], name="toy")
    msg = str(info.value)
    assert "toy" in msg and "2 in `observations`" in msg and "1 in `rewards`" in msg
    assert "actions" not in msg


def test_empty_dataset_is_an_error():
    with pytest.raises(DataValidationError, match="no transitions"):
        episodes_to_transitions([])
    empty = _episode(0, np.zeros((1, 2)), np.zeros((0, 1)), [], [], [])
    with pytest.raises(DataValidationError, match="no transitions"):
        episodes_to_transitions([empty])


def test_dict_observations_are_flattened_in_sorted_key_order():
    obs = {
        "observation": np.array([7.0, 8.0]),
        "desired_goal": {"kettle": np.array([5.0, 6.0]), "burner": np.array([4.0])},
        "achieved_goal": {"kettle": np.array([3.0]), "burner": np.array([[1.0, 2.0]])},
    }
    flat = flatten_observation(obs)
    np.testing.assert_array_equal(flat, [1, 2, 3, 4, 5, 6, 7, 8])
    assert flat.dtype == np.float32

    # A batch (an episode, time first) flattens row by row to the same layout.
    def two_rows(v):
        return (
            {k: two_rows(x) for k, x in v.items()} if isinstance(v, dict) else np.stack([v, v + 10])
        )

    batch = two_rows(obs)
    flat_batch = flatten_observation(batch, batch_ndim=1)
    np.testing.assert_array_equal(flat_batch, [flat, flat + 10])
    # The flattened length agrees with the Gymnasium space, whatever its key order.
    space = gym.spaces.Dict(
        {
            "observation": gym.spaces.Box(-1, 1, (2,)),
            "desired_goal": gym.spaces.Dict(
                {"kettle": gym.spaces.Box(-1, 1, (2,)), "burner": gym.spaces.Box(-1, 1, (1,))}
            ),
            "achieved_goal": gym.spaces.Dict(
                {"kettle": gym.spaces.Box(-1, 1, (1,)), "burner": gym.spaces.Box(-1, 1, (1, 2))}
            ),
        }
    )
    assert space_dim(space) == 8
    assert flatten_observation(space.sample()).shape == (8,)


def test_dict_episode_becomes_transitions():
    obs = {"b": np.arange(3.0)[:, None], "a": np.arange(6.0).reshape(3, 2)}  # T = 2
    t = episodes_to_transitions([_episode(0, obs, [[0.0], [1.0]], [0, 1], [0, 0], [0, 1])])
    np.testing.assert_array_equal(t.observations, [[0, 1, 0], [2, 3, 1]])
    np.testing.assert_array_equal(t.next_observations, [[2, 3, 1], [4, 5, 2]])


def test_missing_dataset_gives_a_one_line_message(minari_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("download_dataset must not be called when download=False")

    monkeypatch.setattr(minari, "download_dataset", no_network)
    with pytest.raises(DatasetNotFoundError) as info:
        load_transitions("mujoco/hopper/medium-v0")
    msg = str(info.value)
    assert "\n" not in msg
    assert str(minari_path) in msg and "MINARI_DATASETS_PATH" in msg
    assert "minari download mujoco/hopper/medium-v0" in msg and "minari[hf]" in msg


def test_failed_download_becomes_dataset_not_found(minari_path, monkeypatch):
    calls = []

    def offline(dataset_id, *args, **kwargs):
        calls.append(dataset_id)
        raise ConnectionError("Network is unreachable\nlong trace")

    monkeypatch.setattr(minari, "download_dataset", offline)
    with pytest.raises(DatasetNotFoundError) as info:
        load_transitions("D4RL/pen/human-v2", download=True)
    assert calls == ["D4RL/pen/human-v2"]
    msg = str(info.value)
    assert "\n" not in msg and "ConnectionError: Network is unreachable" in msg
    assert "long trace" not in msg


def test_check_spaces():
    env = gym.make("Pendulum-v1")
    good = Transitions(
        observations=jnp.zeros((4, 3)),
        actions=jnp.zeros((4, 1)),
        rewards=jnp.zeros(4),
        next_observations=jnp.zeros((4, 3)),
        terminals=jnp.zeros(4),
    )
    check_spaces(good, env)
    bad = Transitions(
        observations=jnp.zeros((4, 11)),
        actions=jnp.zeros((4, 1)),
        rewards=jnp.zeros(4),
        next_observations=jnp.zeros((4, 11)),
        terminals=jnp.zeros(4),
    )
    with pytest.raises(SpaceMismatchError) as info:
        check_spaces(bad, env)
    msg = str(info.value)
    assert "(11,)" in msg and "(3,)" in msg and "Pendulum-v1" in msg


def test_recover_env_asks_for_the_robotics_extra(monkeypatch):
    pytest.importorskip("gymnasium", minversion="1.0")
    # The dev extra installs gymnasium-robotics: pretend it is missing, with an id it would
    # have registered.
    import sdepolicy.app._data as data_module

    monkeypatch.setattr(data_module, "_robotics_installed", lambda: False)
    with pytest.raises(MissingExtraError, match=r'pip install -e "\.\[robotics\]"'):
        recover_env(None, task_env_id="AntMaze_NotRegistered-v4")

    class FakeDataset:  # what a Minari AntMaze dataset does without gymnasium-robotics
        id = "D4RL/antmaze/umaze-v1"
        env_spec = None

        def recover_environment(self, eval_env=False, **kwargs):
            raise ModuleNotFoundError("No module named 'gymnasium_robotics'")

    with pytest.raises(MissingExtraError, match="gymnasium-robotics"):
        recover_env(FakeDataset())
    # An unrelated bad id is not blamed on the extra.
    with pytest.raises(SdepolicyError) as info:
        recover_env(None, task_env_id="NoSuchEnv-v0")
    assert not isinstance(info.value, MissingExtraError)
    assert recover_env(None, task_env_id="Pendulum-v1").spec.id == "Pendulum-v1"


def _with_rewards(r):
    n = len(r)
    return Transitions(
        observations=jnp.zeros((n, 1)),
        actions=jnp.zeros((n, 1)),
        rewards=jnp.asarray(r, dtype=jnp.float32),
        next_observations=jnp.zeros((n, 1)),
        terminals=jnp.zeros(n),
    )


def test_reward_transforms():
    t = _with_rewards([0.0, 1.0, 0.0, 0.0, 1.0])
    np.testing.assert_array_equal(transform_rewards(t, "none").rewards, t.rewards)
    np.testing.assert_allclose(transform_rewards(t, "antmaze").rewards, [-2, 2, -2, -2, 2])
    r = np.array([1.0, 2.0, 4.0, 8.0])
    n = transform_rewards(_with_rewards(r), "normalize").rewards
    np.testing.assert_allclose(n, (r - r.mean()) / r.std(ddof=1), rtol=1e-6)
    assert n.dtype == jnp.float32
    # The same scale without the shift: the rewards keep their signs.
    scaled = transform_rewards(_with_rewards(-r), "scale").rewards
    np.testing.assert_allclose(scaled, -r / r.std(ddof=1), rtol=1e-6)
    # Only the rewards change.
    np.testing.assert_array_equal(transform_rewards(t, "antmaze").terminals, t.terminals)
    with pytest.raises(ConfigError, match="none, antmaze, normalize, scale"):
        transform_rewards(t, "cql")
    with pytest.raises(DataValidationError, match="constant"):
        transform_rewards(_with_rewards([3.0, 3.0]), "normalize")
    with pytest.raises(DataValidationError, match="'scale'.*constant"):
        transform_rewards(_with_rewards([3.0, 3.0]), "scale")
