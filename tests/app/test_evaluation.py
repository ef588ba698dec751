import gymnasium as gym
import jax
import numpy as np

from sdepolicy.app import flatten_observation, run_episodes


def run_episodes_one_at_a_time(make_env, act, num_episodes, key, *, seed=0):
    """The reference the vectorised evaluation is checked against, written plainly: one
    environment, one episode after another, one action per call."""
    env = make_env()
    returns = np.zeros(num_episodes)
    for i in range(num_episodes):
        obs, _ = env.reset(seed=seed + i)
        done = False
        while not done:
            key, sub = jax.random.split(key)
            action = np.asarray(act(np.asarray(obs, np.float32)[None], sub))[0]
            obs, reward, terminated, truncated, _ = env.step(np.clip(action, -2.0, 2.0))
            returns[i] += reward
            done = terminated or truncated
    env.close()
    return returns


def _make_env():
    return gym.make("Pendulum-v1", max_episode_steps=50)


def _pd_policy(obs, key):
    # cos(th), sin(th), thdot -> torque; deterministic so both evaluators must agree exactly.
    th = np.arctan2(obs[:, 1], obs[:, 0])
    return np.clip(-2.0 * th - 0.5 * obs[:, 2], -2.0, 2.0)[:, None]


def test_vectorised_evaluation_matches_one_env_at_a_time():
    key = jax.random.key(0)
    vec = run_episodes(_make_env, _pd_policy, 6, key, seed=3)
    seq = run_episodes_one_at_a_time(_make_env, _pd_policy, 6, key, seed=3)
    assert vec.shape == (6,)
    np.testing.assert_allclose(vec, seq, rtol=1e-5)
    # A controller and a do-nothing policy differ: the returns measure the policy.
    idle = run_episodes(_make_env, lambda o, k: np.zeros((o.shape[0], 1)), 6, key, seed=3)
    assert not np.allclose(idle, vec)


def test_episodes_stop_counting_after_termination():
    class Short(gym.Wrapper):
        """Terminates after 3 steps with reward 1 per step."""

        def reset(self, **kw):
            self.t = 0
            return self.env.reset(**kw)

        def step(self, a):
            obs, _, _, trunc, info = self.env.step(a)
            self.t += 1
            return obs, 1.0, self.t >= 3, trunc, info

    returns = run_episodes(lambda: Short(_make_env()), _pd_policy, 4, jax.random.key(1))
    np.testing.assert_array_equal(returns, 3.0)


def test_flatten_batched_dict_observation_sorted_keys():
    obs = {"b": np.ones((2, 3)), "a": {"y": np.zeros((2, 1)), "x": np.full((2, 2, 2), 2.0)}}
    flat = flatten_observation(obs, batch_ndim=1)
    assert flat.shape == (2, 4 + 1 + 3)
    np.testing.assert_array_equal(flat[0], [2, 2, 2, 2, 0, 1, 1, 1])


def test_episodes_ending_at_different_steps_are_not_stepped_again():
    """Episode i terminates after 2 + i steps (as Hopper's unhealthy states end episodes at
    different times): each return counts its own steps, finished environments are never stepped
    again, and the batch handed to the policy keeps its shape (one compilation)."""
    steps_after_end = []
    shapes = set()

    class Staggered(gym.Wrapper):
        def reset(self, *, seed=None, **kw):
            self.t, self.length, self.ended = 0, 2 + seed, False
            return self.env.reset(seed=seed, **kw)

        def step(self, a):
            if self.ended:
                steps_after_end.append(self.length)
            obs, _, _, trunc, info = self.env.step(a)
            self.t += 1
            self.ended = self.t >= self.length
            return obs, 1.0, self.ended, trunc, info

    def policy(obs, key):
        shapes.add(obs.shape)
        return _pd_policy(obs, key)

    returns = run_episodes(lambda: Staggered(_make_env()), policy, 5, jax.random.key(2), seed=0)
    np.testing.assert_array_equal(returns, [2.0, 3.0, 4.0, 5.0, 6.0])
    assert steps_after_end == []
    assert shapes == {(5, 3)}
    # The same returns one episode at a time.
    seq = run_episodes_one_at_a_time(
        lambda: Staggered(_make_env()), _pd_policy, 5, jax.random.key(2), seed=0
    )
    np.testing.assert_array_equal(seq, returns)
