"""The optimised update step is pinned to the straightforward one (issue #5: speed without
changing the maths).

Optimised: the library as it runs by default, Mish with its closed-form derivative
(`jax.custom_jvp`) and the Q-ensemble's hand-written backward pass (`critic_backward="fused"`,
members in groups). Straightforward: the textbook `x tanh(softplus(x))` differentiated by JAX
and the plain batch-major ensemble differentiated by JAX (`critic_backward="autodiff"`). Both
start from the same parameters and draw the same batches; after several fused updates every
parameter, optimiser moment and metric agrees to float32 rounding.
"""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sdepolicy.policy.networks as networks
import sdepolicy.rl.critics as critics
from sdepolicy.rl import Transitions, make_train_fn
from sdepolicy.rl.agents import diffusion_ql, erdpqe

OBS, ACT, N, BATCH, STEPS = 4, 2, 256, 32, 4


def textbook_mish(x):
    return x * jnp.tanh(jax.nn.softplus(x))


@pytest.fixture(scope="module")
def dataset():
    rng = np.random.default_rng(0)
    f32 = lambda a: jnp.asarray(a, jnp.float32)
    return Transitions(
        observations=f32(rng.normal(size=(N, OBS))),
        actions=f32(rng.uniform(-1, 1, (N, ACT))),
        rewards=f32(rng.normal(size=N)),
        next_observations=f32(rng.normal(size=(N, OBS))),
        terminals=f32(rng.uniform(size=N) < 0.1),
    )


def train(module, config, dataset, monkeypatch, straightforward):
    low, high = -np.ones(ACT, np.float32), np.ones(ACT, np.float32)
    state = module.init(config, OBS, ACT, low, high, jax.random.key(0))
    with monkeypatch.context() as m:
        if straightforward:
            m.setattr(networks, "mish", textbook_mish)
            m.setattr(critics, "mish", textbook_mish)
        else:
            # Several groups of members even at these small sizes: the grouped code path runs.
            m.setattr(critics, "_CPU_GROUP_BYTES", 4 * config.hidden * BATCH)
        step = make_train_fn(functools.partial(module.update, config), dataset, BATCH, STEPS)
        return jax.block_until_ready(step(state, jax.random.key(1)))


@pytest.mark.parametrize("algo", ["erdpqe", "dql"])
def test_optimised_step_equals_the_straightforward_step(algo, dataset, monkeypatch):
    module = {"erdpqe": erdpqe, "dql": diffusion_ql}[algo]
    make = {"erdpqe": erdpqe.ERDPQEConfig, "dql": diffusion_ql.DiffusionQLConfig}[algo]
    extra = {"num_critics": 4, "ema_start": 1, "ema_every": 1} if algo == "erdpqe" else {}
    fast_cfg = make(hidden=32, batch_size=BATCH, critic_backward="fused", **extra)
    plain_cfg = make(hidden=32, batch_size=BATCH, critic_backward="autodiff", **extra)
    fast, fast_metrics = train(module, fast_cfg, dataset, monkeypatch, straightforward=False)
    plain, plain_metrics = train(module, plain_cfg, dataset, monkeypatch, straightforward=True)
    assert fast.critic.backward == "fused" and plain.critic.backward == "autodiff"
    assert int(fast.step) == int(plain.step) == STEPS

    start = module.init(fast_cfg, OBS, ACT, -np.ones(ACT), np.ones(ACT), jax.random.key(0))
    leaves = lambda s: jax.tree.leaves(eqx.filter(s, eqx.is_inexact_array))
    moved = 0
    for got, want, before in zip(leaves(fast), leaves(plain), leaves(start), strict=True):
        scale = float(jnp.max(jnp.abs(want))) + 1e-12
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * scale)
        moved += bool(jnp.any(want != before))
    assert moved > 10  # the comparison is between trained states, not two copies of the start
    for name in plain_metrics:
        np.testing.assert_allclose(fast_metrics[name], plain_metrics[name], rtol=2e-5, atol=1e-6)
