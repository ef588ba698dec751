"""D4RL's episode semantics restored on Gymnasium's ports (sdepolicy/app/_wrappers.py)."""

import numpy as np
import pytest

gym = pytest.importorskip("gymnasium")
robotics = pytest.importorskip("gymnasium_robotics")
gym.register_envs(robotics)

from sdepolicy.app._wrappers import PEN_DROP_HEIGHT, PenDropTermination, wrapped  # noqa: E402


def _rollout(env, seed=0, steps=100):
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    out = []
    for _ in range(steps):
        obs, reward, terminated, truncated, _ = env.step(rng.uniform(-1, 1, env.action_space.shape))
        out.append((obs[26], reward, terminated))  # obs[26]: the pen's height
        if terminated or truncated:
            break
    return out


def test_pen_episode_ends_when_the_pen_drops_as_in_d4rl():
    plain = _rollout(gym.make("AdroitHandPen-v1", max_episode_steps=100))
    ends = _rollout(PenDropTermination(gym.make("AdroitHandPen-v1", max_episode_steps=100)))
    # gymnasium-robotics' port never terminates; the pen drops under random actions.
    assert not any(t for _, _, t in plain)
    first_drop = next(i for i, (h, _, _) in enumerate(plain) if h < PEN_DROP_HEIGHT)
    assert len(ends) == first_drop + 1 and ends[-1][2]
    assert not any(t for _, _, t in ends[:-1])
    # Same trajectory and rewards up to the end: the wrapper only sets `terminated`.
    np.testing.assert_array_equal([r for _, r, _ in ends], [r for _, r, _ in plain[: len(ends)]])
    assert ends[-1][1] < -3  # D4RL's -5 penalty for the dropped pen is in the reward


def test_wrapped_refuses_unknown_names_and_other_environments():
    with pytest.raises(ValueError, match="Unknown evaluation wrapper"):
        wrapped(lambda: None, ["nope"])
    with pytest.raises(TypeError, match="AdroitHandPen"):
        wrapped(lambda: gym.make("Pendulum-v1"), ["pen_drop"])()


def test_kitchen_data_end_each_demonstration_with_a_terminal_as_d4rl():
    from sdepolicy.app import get_preset
    from sdepolicy.app._data import relabel_terminals

    rewards = np.array([0.0, 1.0, 2.0, 2.0])
    stored = np.zeros(4)
    np.testing.assert_array_equal(relabel_terminals(rewards, stored, "episode_end"), [0, 0, 0, 1])
    np.testing.assert_array_equal(relabel_terminals(rewards, stored, "dataset"), [0, 0, 0, 0])
    assert relabel_terminals(rewards[:0], stored[:0], "episode_end").shape == (0,)
    for name in ("kitchen-complete-v0", "kitchen-partial-v0", "kitchen-mixed-v0"):
        assert get_preset(name).terminal_rule == "episode_end"
    for name in ("pen-human-v1", "pen-cloned-v1"):
        assert get_preset(name).eval_wrappers == ("pen_drop",)
    assert get_preset("hopper-medium-v2").eval_wrappers == ()
