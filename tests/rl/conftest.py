"""Fixtures shared by the RL tests."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sdepolicy.rl import Transitions


def _synthetic_transitions(
    seed, n, obs_dim, action_dim, *, low=-1.0, high=1.0, terminal_every=2, rewards=None
):
    """Random transitions: standard normal states and next states, actions uniform in the box
    `[low, high]`, standard normal rewards (or `rewards(states, actions)`), and every
    `terminal_every`-th transition terminal (so both TD branches are exercised)."""
    k = jax.random.split(jax.random.key(seed), 4)
    states = jax.random.normal(k[0], (n, obs_dim))
    unit = jax.random.uniform(k[1], (n, action_dim), minval=-1, maxval=1)
    low, high = jnp.asarray(low, jnp.float32), jnp.asarray(high, jnp.float32)
    actions = low + (unit + 1) * 0.5 * (high - low)
    r = jax.random.normal(k[2], (n,)) if rewards is None else rewards(states, actions)
    return Transitions(
        observations=states,
        actions=actions,
        rewards=jnp.asarray(r, jnp.float32),
        next_observations=jax.random.normal(k[3], (n, obs_dim)),
        terminals=jnp.asarray(np.arange(n) % terminal_every == 0, jnp.float32),
    )


@pytest.fixture(scope="session")
def make_transitions():
    """The builder of synthetic `Transitions` every RL test draws its batches and datasets from:
    `make_transitions(seed, n, obs_dim, action_dim, *, low, high, terminal_every, rewards)`."""
    return _synthetic_transitions
