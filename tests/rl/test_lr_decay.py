"""The reference codes' learning-rate decay (docs/method.md §6.7): CosineAnnealingLR(T_max)
stepped once every evaluation period, as an optax schedule on the update count."""

import io
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sdepolicy.rl import ConfigError
from sdepolicy.rl.agents import DiffusionQLConfig, ERDPQEConfig
from sdepolicy.rl.agents._base import cosine_every_schedule, make_optimizer


def torch_cosine_annealing(lr0, t_max, scheduler_steps):
    """PyTorch's CosineAnnealingLR (eta_min = 0) after `scheduler_steps` calls of `step()`,
    written out from its recursive definition (the form `step()` uses), in float64."""
    lr = lr0
    for epoch in range(1, scheduler_steps + 1):
        if (epoch - 1 - t_max) % (2 * t_max) == 0:
            lr = lr + lr0 * (1 - math.cos(math.pi / t_max)) / 2
        else:
            lr = (
                (1 + math.cos(math.pi * epoch / t_max))
                / (1 + math.cos(math.pi * (epoch - 1) / t_max))
                * lr
            )
    return lr


def test_schedule_is_cosine_annealing_stepped_every_period():
    lr0, every, t_max = 3e-4, 50_000, 2000
    schedule = cosine_every_schedule(lr0, every, t_max)
    for n in (
        0,
        1,
        every - 1,
        every,
        every + 7,
        5 * every - 1,
        5 * every,
        39 * every,
        40 * every - 1,
    ):
        want = torch_cosine_annealing(lr0, t_max, n // every)
        np.testing.assert_allclose(float(schedule(jnp.asarray(n))), want, rtol=1e-6)
    # The reference runs (2000 epochs, one step per 50): the last period's factor is 0.99901.
    last = float(schedule(jnp.asarray(2000 * 1000 - 1))) / lr0
    np.testing.assert_allclose(last, 0.5 * (1 + math.cos(math.pi * 39 / 2000)), rtol=1e-6)
    assert 0.999 < last < 0.9991
    with pytest.raises(ValueError):
        cosine_every_schedule(lr0, 0, t_max)


def adam_step_sizes(optimizer, steps):
    """|update| of Adam on a constant gradient: after bias correction, the learning rate."""
    params = {"w": jnp.zeros(3)}
    grads = {"w": jnp.full(3, 0.5)}
    state = optimizer.init(params)
    sizes = []
    for _ in range(steps):
        updates, state = optimizer.update(grads, state, params)
        sizes.append(float(jnp.abs(updates["w"][0])))
    return np.array(sizes), state


def test_make_optimizer_applies_the_schedule_and_off_is_constant():
    lr0, every, t_max = 1e-2, 3, 2
    sizes, _ = adam_step_sizes(make_optimizer(lr0, 4.0, (every, t_max)), 9)
    # Periods of 3 updates at lr0 * (1 + cos(pi k / 2)) / 2 = lr0, lr0/2, 0.
    want = np.repeat([lr0, lr0 / 2, 0.0], every)
    np.testing.assert_allclose(sizes, want, rtol=1e-4, atol=1e-9)
    constant, _ = adam_step_sizes(make_optimizer(lr0, 4.0), 9)
    np.testing.assert_allclose(constant, lr0, rtol=1e-4)


def test_schedule_survives_a_checkpoint_round_trip():
    """The schedule reads the update count in the optimiser state, so a state written to bytes
    and read back mid-run continues exactly like the uninterrupted run."""
    opt = make_optimizer(1e-2, 0.0, (2, 4))
    straight, _ = adam_step_sizes(opt, 6)
    first, state = adam_step_sizes(opt, 3)
    buf = io.BytesIO()
    eqx.tree_serialise_leaves(buf, state)
    buf.seek(0)
    restored = eqx.tree_deserialise_leaves(buf, opt.init({"w": jnp.zeros(3)}))
    params, grads = {"w": jnp.zeros(3)}, {"w": jnp.full(3, 0.5)}
    rest = []
    for _ in range(3):
        updates, restored = opt.update(grads, restored, params)
        rest.append(float(jnp.abs(updates["w"][0])))
    np.testing.assert_allclose(np.concatenate([first, rest]), straight, rtol=1e-6)
    assert not np.allclose(straight[0], straight[-1])  # it did decay in between


@pytest.mark.parametrize("config_cls", [ERDPQEConfig, DiffusionQLConfig])
def test_config_fields(config_cls):
    """`lr_decay` is one optional value, `(every, t_max)`: `make_optimizer`'s `decay`."""
    assert config_cls().lr_decay is None  # off by default (the presets switch it on)
    assert config_cls(lr_decay=(7, 9)).lr_decay == (7, 9)
    for bad in ((0, 9), (7, 0), (7, 10**10)):
        with pytest.raises(ConfigError, match="lr_decay must be None or a tuple of 2"):
            config_cls(lr_decay=bad)


def test_agent_state_carries_the_schedule_count():
    """With lr_decay on, the agents' optimiser states hold the schedule's update count."""
    from sdepolicy.rl.agents import ERDPQE

    config = ERDPQEConfig(num_critics=2, hidden=8, lr_decay=(5, 2000))
    state = ERDPQE(config).init(3, 1, np.array([-1.0]), np.array([1.0]), jax.random.key(0))
    leaves = jax.tree.leaves(state.actor_opt_state) + jax.tree.leaves(state.critic_opt_state)
    counts = [x for x in leaves if jnp.issubdtype(x.dtype, jnp.integer)]
    # Adam's own count and the schedule's, for each of the two optimisers.
    assert len(counts) == 4
    off = ERDPQE(ERDPQEConfig(num_critics=2, hidden=8)).init(
        3, 1, np.array([-1.0]), np.array([1.0]), jax.random.key(0)
    )
    off_leaves = jax.tree.leaves(off.actor_opt_state) + jax.tree.leaves(off.critic_opt_state)
    assert len([x for x in off_leaves if jnp.issubdtype(x.dtype, jnp.integer)]) == 2
